"""A preloaded, forking launcher for ``python -m MODULE ARGS...`` commands (the documented-commands test).

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

Protocol: one JSON object per line on stdin, ``{"module", "argv", "cwd", "env", "stdout", "stderr",
"timeout"}``; one per line back, ``{"returncode": N}`` (a signal death as ``-signum``, as subprocess says)
or ``{"timeout": true}`` after the child's process group was killed. The first line back is
``{"ready": true}`` once the imports are done. The protocol uses private copies of fd 0 and 1: fd 1 itself
goes to stderr, so nothing an import prints can corrupt it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

PRELOAD = ["torch", "torchvision", "lightning", "hydra", "omegaconf", "timm", "av"] + [
    f"tanet_lightning.{app}" for app in
    ("train", "eval", "predict", "export", "convert", "visualize", "ensemble", "report", "complexity", "zoo",
     "prepare")]


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def run_child(req: dict, protocol: tuple[int, int]) -> None:
    """In the forked child: become ``python -m req.module *req.argv`` and exit with its status."""
    code = 1
    try:
        for fd in protocol:
            os.close(fd)
        os.setsid()  # its own process group: a timeout kills it with its loader workers and subprocesses
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(file, fd)
            os.close(file)
        import numpy  # noqa: PLC0415 -- preloaded; its global RNG was seeded once, in the server

        numpy.random.seed()  # as a fresh process: seeded from the OS, not shared with every sibling
        sys.path[0] = req["cwd"]  # what `python -m` puts first
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
            code = 1
    finally:
        try:  # what the interpreter does on its way out: join threads, atexit (logging.shutdown, ...), flush
            import atexit  # noqa: PLC0415
            import threading  # noqa: PLC0415

            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def wait(pid: int, timeout: float) -> dict:
    """The child's exit status, or kill its process group once `timeout` seconds have passed."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        return {"timeout": True}
    _, status = os.waitpid(pid, 0)
    return {"returncode": os.waitstatus_to_exitcode(status)}


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
    for line in os.fdopen(protocol_in):
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_child(req, (protocol_in, protocol_out))
        replies.write(json.dumps(wait(pid, req["timeout"])) + "\n")
    os._exit(0)  # EOF: nothing to flush or finalise, and tearing down torch & co. takes seconds


class Launcher:
    """The client: starts the server at once (its imports overlap whatever the caller does meanwhile) and
    runs commands through it; ``run`` returns None when the server is not usable (the caller falls back
    to a plain subprocess), with the reason in ``why``."""

    def __init__(self, env: dict[str, str]):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="launcher-", suffix=".log")  # noqa: SIM115
        self.server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self.log, env={**env, "PYTHONUNBUFFERED": "1"}, text=True, bufsize=1)
        self.ready: bool | None = None
        self.why = ""

    def usable(self) -> bool:
        if self.ready is None:
            reply = json.loads(self.server.stdout.readline() or '{"ready": false, "why": "it exited"}')
            self.ready, self.why = reply["ready"], reply.get("why", "")
            if not self.ready:
                self.log.seek(0)
                self.why += "\n" + self.log.read()[-3000:]
                warnings.warn(f"the launcher is not usable, commands run as plain subprocesses: {self.why}",
                              stacklevel=2)
        return self.ready and self.server.poll() is None

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess | None:
        """``args`` = [python, "-m", module, *argv], run as `subprocess.run(args, cwd, env, capture_output=True,
        text=True, timeout)` would run it."""
        assert args[1] == "-m", args
        if not self.usable():
            return None
        with tempfile.TemporaryDirectory(prefix="launcher-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {"module": args[2], "argv": args[3:], "cwd": str(cwd), "env": env, "stdout": str(out),
                       "stderr": str(err), "timeout": timeout}
            try:
                self.server.stdin.write(json.dumps(request) + "\n")
                self.server.stdin.flush()
                reply = json.loads(self.server.stdout.readline())
            except (OSError, ValueError) as e:  # the server died: this command and the next ones run plainly
                self.ready, self.why = False, f"the server died: {e!r}"
                return None
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(args, timeout, stdout, stderr)
        return subprocess.CompletedProcess(args, reply["returncode"], stdout, stderr)

    def close(self) -> None:
        self.server.stdin.close()  # EOF: the server's loop ends
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server.stdout.close()
        self.log.close()


if __name__ == "__main__":
    serve()
