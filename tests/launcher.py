"""A preloaded, forking launcher for ``python -m MODULE ARGS...`` commands (the documented commands, and the
tests that run an application as a process: exit status, signals, locks held by another process).

A fresh ``python -m tanet_lightning.train`` spends ~5-8 s of CPU importing torch, Lightning, Hydra, timm
and PyAV before it does ~2 s of work. The server here (``python tests/launcher.py``, one per pytest
process that asks for it) pays that import once; then, per request, it forks a child that becomes the
command: a new process with its own pid, process group, working directory, environment, stdout and stderr
files (fd 1 and 2, so C-level output and DataLoader workers land there too) and exit status, running the
module as ``__main__`` through ``runpy`` exactly as ``python -m`` does (``sys.argv[0]`` the module's file,
``sys.path[0]`` the working directory, the module executed afresh, not the copy imported here).

Only imports happen in the server: no thread is started and no torch op runs (OpenMP pools, CUDA), so a
fork is safe, and every global state an application sets up (Hydra's, Lightning's, seeds, logging
handlers) starts as a fresh process has it. The server checks that the imports started no thread (besides
numpy's OpenBLAS pool, which is fork-safe) before it forks.

Protocol: one JSON object per line on stdin, ``{"id", "module", "argv", "cwd", "env", "stdout", "stderr",
"timeout"}``; per request two lines back, ``{"id", "pid": N}`` once the child is forked, then ``{"id",
"returncode": N}`` (a signal death as ``-signum``, as subprocess says) or ``{"id", "timeout": true}`` after
the child's process group was killed. Children run concurrently (a test may start a second command while
the first one is stopped), each reaped as it exits. The first line back is ``{"ready": true}`` once the
imports are done. The protocol uses private copies of fd 0 and 1: fd 1 itself goes to stderr, so nothing
an import prints can corrupt it. EOF on stdin kills the children still running and ends the server.

Tests use it through ``run`` (``subprocess.run(..., capture_output=True, text=True)``) and ``popen``
(``subprocess.Popen(..., stdout=PIPE, stderr=STDOUT, text=True)``: pid, poll, wait, send_signal,
communicate), which fall back to plain subprocesses without a launcher (tests/conftest.py: ``launcher``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

PRELOAD = ["torch", "torchvision", "lightning", "hydra", "omegaconf", "timm", "av"] + [
    f"tanet_lightning.{app}" for app in
    ("train", "eval", "predict", "export", "convert", "visualize", "ensemble", "report", "complexity", "zoo",
     "prepare")]


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def run_child(req: dict, inherited: list[int]) -> None:
    """In the forked child: become ``python -m req.module *req.argv`` and exit with its status."""
    code, interrupted = 1, False
    try:
        for fd in inherited:  # the protocol's fds and the pidfds of running siblings
            os.close(fd)
        os.setsid()  # its own process group: a timeout kills it with its loader workers and subprocesses
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            if fd == 2 and path == req["stdout"]:  # stderr=STDOUT: one file description, as a pipe would be
                os.dup2(1, 2)
                continue
            file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(file, fd)
            os.close(file)
        import numpy  # noqa: PLC0415 -- preloaded; its global RNG was seeded once, in the server

        numpy.random.seed()  # as a fresh process: seeded from the OS, not shared with every sibling
        sys.path[0] = req["cwd"]  # what `python -m` puts first
        # PYTHONPATH entries the server did not start with come next, as they would in a fresh interpreter
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
        sys.path[1:1] = extra
        # `python -m` executes the module once, as __main__; the copy preloaded under its own name would make
        # runpy warn and a later `import` of it see the server's copy instead of a fresh one
        sys.modules.pop(req["module"], None)
        package, _, name = req["module"].rpartition(".")
        if package in sys.modules and hasattr(sys.modules[package], name):
            delattr(sys.modules[package], name)
        sys.argv = [req["module"], *req["argv"]]  # runpy sets argv[0] to the module's file
        import runpy  # noqa: PLC0415

        try:
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:  # what the interpreter does with it at exit
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 -- uncaught: the interpreter hands it to sys.excepthook, exit 1
            kind, value, tb = sys.exc_info()
            value.__traceback__ = tb.tb_next  # from runpy's frames on, as under `python -m`
            sys.excepthook(kind, value, tb.tb_next)
            code, interrupted = 1, kind is KeyboardInterrupt
    finally:
        try:  # what the interpreter does on its way out: join threads, atexit (logging.shutdown, ...), flush
            import atexit  # noqa: PLC0415
            import threading  # noqa: PLC0415

            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            if interrupted:  # an uncaught KeyboardInterrupt: the interpreter dies by SIGINT (exit status -2)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            os._exit(code & 0xFF)


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the child leads its own group: its loader workers, subprocesses
    except ProcessLookupError:
        pass


def serve() -> None:
    protocol_in, protocol_out = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # a print during an import goes to stderr, not into the replies
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the requests' pipe stays out of the commands' reach (none reads stdin)
    os.close(devnull)
    # numpy's OpenBLAS starts its thread pool on import (one thread per extra core unless OMP_NUM_THREADS
    # says fewer): fork-safe, it stops the pool before a fork (pthread_atfork) and restarts it in the child.
    # Any other thread could hold a lock a fork copies locked: then the caller falls back to subprocesses.
    import numpy  # noqa: F401, PLC0415

    allowed = threads()
    for module in PRELOAD:
        __import__(module)
    replies = os.fdopen(protocol_out, "w", buffering=1)
    if threads() != allowed:
        replies.write(json.dumps({"ready": False, "why": f"{threads() - allowed} threads started by imports"}) + "\n")
        return
    replies.write(json.dumps({"ready": True}) + "\n")
    running: dict[int, tuple[int, int, float]] = {}  # pidfd -> (request id, pid, deadline)
    pending, eof = b"", False
    while not eof:
        now = time.monotonic()
        wait_s = max(0.0, min(d for _, _, d in running.values()) - now) if running else None
        ready, _, _ = select.select([protocol_in, *running], [], [], wait_s)
        for fd in [fd for fd in ready if fd in running]:  # exited: reap, reply
            rid, pid, _ = running.pop(fd)
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            replies.write(json.dumps({"id": rid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        for fd, (rid, pid, deadline) in list(running.items()):  # past their time: kill the group
            if deadline <= time.monotonic():
                kill_group(pid)
                os.waitpid(pid, 0)
                del running[fd]
                os.close(fd)
                replies.write(json.dumps({"id": rid, "timeout": True}) + "\n")
        if protocol_in in ready:
            chunk = os.read(protocol_in, 1 << 16)
            eof = not chunk
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                req = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    run_child(req, [protocol_in, protocol_out, *running])
                running[os.pidfd_open(pid)] = (req["id"], pid, time.monotonic() + req["timeout"])
                replies.write(json.dumps({"id": req["id"], "pid": pid}) + "\n")
    for _, pid, _ in running.values():  # the client is gone: so are its commands
        kill_group(pid)
        os.waitpid(pid, 0)
    os._exit(0)  # nothing to flush or finalise, and tearing down torch & co. takes seconds


class Launcher:
    """The client: starts the server at once (its imports overlap whatever the caller does meanwhile) and
    runs commands through it; ``run`` and ``popen`` return None when the server is not usable (the caller
    falls back to a plain subprocess), with the reason in ``why``."""

    def __init__(self, env: dict[str, str]):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="launcher-", suffix=".log")  # noqa: SIM115
        self.server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self.log, env={**env, "PYTHONUNBUFFERED": "1"}, bufsize=0)
        self.ready: bool | None = None
        self.why = ""
        self.replies: dict[int, list[dict]] = {}  # request id -> its replies so far (pid, then the end)
        self.pending = b""
        self.ids = 0

    def _read(self, timeout: float | None) -> bool:
        """Read the replies that arrive within ``timeout`` seconds (None: wait for one line); False once the
        server is gone."""
        if timeout is not None and b"\n" not in self.pending:
            ready, _, _ = select.select([self.server.stdout], [], [], timeout)
            if not ready:
                return True
        while b"\n" not in self.pending:
            chunk = os.read(self.server.stdout.fileno(), 1 << 16)
            if not chunk:
                return False
            self.pending += chunk
        lines, _, self.pending = self.pending.rpartition(b"\n")
        for line in lines.split(b"\n"):
            reply = json.loads(line)
            self.replies.setdefault(reply.get("id"), []).append(reply)
        return True

    def usable(self) -> bool:
        if self.ready is None:
            while None not in self.replies and self._read(None):
                pass
            reply = self.replies.get(None, [{"ready": False, "why": "it exited"}])[0]
            self.ready, self.why = reply["ready"], reply.get("why", "")
            if not self.ready:
                self.log.seek(0)
                self.why += "\n" + self.log.read()[-3000:]
                warnings.warn(f"the launcher is not usable, commands run as plain subprocesses: {self.why}",
                              stacklevel=2)
        return self.ready and self.server.poll() is None

    def start(self, args: list[str], cwd: Path, env: dict[str, str], stdout: Path, stderr: Path,
              timeout: float) -> tuple[int, int] | None:
        """Fork ``args`` = [python, "-m", module, *argv]: (request id, pid), or None (no usable server)."""
        assert args[1] == "-m", args
        if not self.usable():
            return None
        self.ids += 1
        request = {"id": self.ids, "module": args[2], "argv": args[3:], "cwd": str(cwd), "env": env,
                   "stdout": str(stdout), "stderr": str(stderr), "timeout": timeout}
        try:
            data = (json.dumps(request) + "\n").encode()
            while data:  # a raw pipe: write until all of it went
                data = data[self.server.stdin.write(data):]
            while len(self.replies.get(self.ids, [])) < 1:
                if not self._read(None):
                    raise OSError("no reply")
        except (OSError, ValueError) as e:  # the server died: this command and the next ones run plainly
            self.ready, self.why = False, f"the server died: {e!r}"
            return None
        return self.ids, self.replies[self.ids][0]["pid"]

    def result(self, rid: int, timeout: float | None) -> dict | None:
        """How request ``rid`` ended (``returncode`` or ``timeout``), or None if it runs ``timeout`` s more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.replies[rid]) < 2:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._read(left):
                raise RuntimeError(f"the launcher died while request {rid} ran")
            if left == 0.0 and len(self.replies[rid]) < 2:
                return None
        return self.replies[rid][1]

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess | None:
        """``args`` = [python, "-m", module, *argv], run as `subprocess.run(args, cwd, env, capture_output=True,
        text=True, timeout)` would run it."""
        with tempfile.TemporaryDirectory(prefix="launcher-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            started = self.start(args, cwd, env, out, err, timeout)
            if started is None:
                return None
            reply = self.result(started[0], None)
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(args, timeout, stdout, stderr)
        return subprocess.CompletedProcess(args, reply["returncode"], stdout, stderr)

    def popen(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800
              ) -> LaunchedProcess | None:
        """``args`` started as `subprocess.Popen(args, cwd, env, stdout=PIPE, stderr=STDOUT, text=True)` would
        start it; the server kills it after ``timeout`` s, should the test not end it."""
        tmp = tempfile.TemporaryDirectory(prefix="launcher-")  # noqa: SIM115 -- lives as long as the process
        out = Path(tmp.name, "output")
        started = self.start(args, cwd, env, out, out, timeout)
        if started is None:
            tmp.cleanup()
            return None
        return LaunchedProcess(self, args, *started, out, tmp)

    def close(self) -> None:
        if self.ready is None:  # never used, so nothing was started, and it may still be importing (~5-30 s)
            self.server.kill()
        self.server.stdin.close()  # EOF: the server's loop ends (and kills what still runs)
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server.stdout.close()
        self.log.close()


class LaunchedProcess:
    """What ``Launcher.popen`` started: the part of ``subprocess.Popen`` tests use (stdout and stderr
    together, read by ``communicate`` once the process has ended)."""

    def __init__(self, launcher: Launcher, args: list[str], rid: int, pid: int, output: Path,
                 tmp: tempfile.TemporaryDirectory):
        self.launcher, self.args, self.rid, self.pid, self.output, self.tmp = launcher, args, rid, pid, output, tmp
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.wait(0) if self.returncode is None and self.launcher.result(self.rid, 0) else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            reply = self.launcher.result(self.rid, timeout)
            if reply is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = -signal.SIGKILL if reply.get("timeout") else reply["returncode"]
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        self.wait(timeout)
        return self.output.read_text(errors="replace"), None

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # as Popen: never signal a pid that may have been reused
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run(launcher: Launcher | None, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """`subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)` of a
    ``python -m MODULE ...`` command, forked from ``launcher`` when there is a usable one."""
    cwd, env = Path(cwd or os.getcwd()), dict(os.environ if env is None else env)
    done = launcher and launcher.run(args, cwd, env, timeout)
    return done or subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def popen(launcher: Launcher | None, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
          ) -> LaunchedProcess | subprocess.Popen:
    """`subprocess.Popen(args, cwd=cwd, env=env, stdout=PIPE, stderr=STDOUT, text=True, start_new_session=True)`
    of a ``python -m MODULE ...`` command (its own process group, as the launcher's children have), forked
    from ``launcher`` when there is a usable one."""
    cwd, env = Path(cwd or os.getcwd()), dict(os.environ if env is None else env)
    started = launcher and launcher.popen(args, cwd, env)
    return started or subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, start_new_session=True)


if __name__ == "__main__":
    serve()
