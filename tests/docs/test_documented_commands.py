"""Documented commands are tests: every command in the code blocks of README.md and experiments/*.md runs
as a user types it, from a fresh temporary working directory (one per page, so a page's later commands
see what its earlier ones wrote), with no run/sweep directory or ``paths.*`` overrides.

Only two things are added: the data location (``TANET_DATA_DIR``, so the synthetic videos are
generated once) and size limits appended to the command line (one epoch of two batches and the like).
What the docs say a command does is what is checked:
- ``(needs the dataset ...)`` in its comment: it must stop at once with exit code 2 and the message that
  names the annotation key and ``+preset=synthetic``;
- ``exits N`` in its comment: that exit code (a sweep with a job that cannot run on the preset);
- ``(... not run here)`` in its comment: it needs what this machine does not have (GPUs, a SLURM
  cluster) or would change it (installing packages); the test is skipped with that reason;
- otherwise exit code 0.
Words in capitals are placeholders (README says so): ``CKPT`` is the main job's checkpoint, ``SCORES_*``
the scores written by the documented ``eval`` command, ``VIDEO`` a synthetic test video; for the
pretrained-model section ``PEER_CKPT`` is a TANet-R50 in the official TAM layout (random weights, 400
classes) with ``K400_CLASSES`` its class list, ``MY_VIDEOS`` a class-folder copy of three synthetic
classes, and ``FINETUNED`` the newest checkpoint (the documented fine-tune's).

Disk: a sweep writes two checkpoints of ~140 MB per job and no later command reads a sweep's checkpoints
(placeholders point into ``logs/train/runs``), so they are deleted once the command has passed, and a
workspace once its last command has passed; a failing command keeps everything for a look.

How a command runs: ``python -m MODULE ARGS`` becomes ``sys.executable -m MODULE ARGS`` (placeholders
filled, size limits appended) run in its own process, with its own working directory, environment, stdout,
stderr and exit status. By default that process is forked from a launcher (tests/launcher.py, one per test
process) that has already imported torch, Lightning, Hydra, timm, PyAV and the applications' modules, and
nothing else: no op run, no thread started. The child takes the command's working directory, environment
and output files (fd 1 and 2), and runs the module through ``runpy`` as ``__main__`` with the same argv,
``sys.argv[0]`` and ``sys.path[0]`` as ``python -m`` gives it: the same entry point runs the same code on
the same arguments in a fresh process whose only difference is that its imports were already done, so it
is still the command as written (TestLauncher checks it against a plain ``python -m`` process). Every
global state an application sets (Hydra's, Lightning's, seeds, logging) starts fresh, because the launcher
never ran any. ``TANET_DOCS_SUBPROCESS=1`` (or a launcher that cannot start) runs plain subprocesses.

Time (`make test` has 8 minutes on 2 cores for everything): ~50 commands, ~70 training jobs. What keeps
it there:
- the launcher: a fresh ``python -m`` pays ~5-8 s CPU of imports before ~2 s of work; forked from the
  launcher it pays them once per xdist worker;
- the size limits below: one epoch of two training batches, one validation and one test batch, and
  a batch of 4 videos read in the main process (``data.batch_size=4 data.num_workers=0``: measured on
  the main job, ~2 s of CPU per job besides the imports instead of ~7 s with the configs' batch of 16
  and a loader worker per split); swept keys are never appended, so every job of every
  sweep still runs (a command-line value of a swept key would pin it);
- the synthetic videos are generated once per test session for all xdist workers (one directory,
  ``ensure_synthetic``'s file lock), not once per worker;
- one workspace per ``##`` section of a page, so the sections run in parallel under xdist (each is
  one test class: ``--dist loadscope``); a ``report NAME`` command joins the workspace of the page's
  ``+experiment=NAME`` command, whose sweep it reads;
- a command that repeats an earlier page's word for word runs once, there (README's tour and
  experiments/temporal_modules.md both give the 15-job Table 2 sweep and its report): ``duplicate_of``;
- under xdist each command's PyTorch gets its share of the cores (``OMP_NUM_THREADS``), not all of them;
- a few pages and commands whose code paths faster tests cover are marked slow (``SLOW``: `make test-all`).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from documented import PAGES, REPO, documented_commands, expected_exit
from launcher import Launcher
from tanet_lightning.data.synthetic import SyntheticSpec, synthetic_dir

pytestmark = pytest.mark.heavy

SMALL_BATCHES = ["data.batch_size=4", "data.num_workers=0"]  # every data config has both; no sweep sweeps them
LIMITS = {  # appended to the command line, per entry point
    "tanet_lightning.train": ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                              "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", *SMALL_BATCHES],
    "tanet_lightning.eval": ["trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", *SMALL_BATCHES],
    "tanet_lightning.visualize": ["size=32"],
    "tanet_lightning.predict": ["views=1x1", "progress=false"],
    "tanet_lightning.prepare": ["progress=false"],
}
NOT_RUN = {"make test": "it is this test suite (running it here would recurse)"}


@functools.cache
def workspace_names(page: Path) -> dict[int, str]:
    """line -> the workspace its command runs in: one per ``##`` section of the page, except that
    ``report NAME`` joins the workspace of the page's last earlier ``+experiment=NAME`` command (it reads
    that sweep), or of the command that one repeats (``duplicate_of``)."""
    names: dict[int, str] = {}
    for n, cmd, section in documented_commands(page):
        names[n] = f"{page.relative_to(REPO)}" + (f"#{section}" if section else "")
        report = re.match(r"python -m tanet_lightning\.report (\w+)", cmd)
        if report:
            sweeps = [m for m, c, _ in documented_commands(page)
                      if m < n and f"+experiment={report.group(1)} " in f"{c} " and not not_run_reason(c)]
            first = sweeps and duplicate_of(page, sweeps[-1])
            names[n] = workspace_names(first[0])[first[1]] if first else names[sweeps[-1]] if sweeps else names[n]
    return names


def does_work(command: str) -> bool:
    return not not_run_reason(command) and expected_exit(command.partition("#")[2]) == 0


@functools.cache
def duplicate_of(page: Path, line: int) -> tuple[Path, int] | None:
    """The command of an earlier page that this one repeats word for word, if it does work (exit 0): README's
    tour runs the Table 2 sweep (15 jobs) and its report that experiments/temporal_modules.md documents
    again. Each runs once, there; a later command of this page that reads the sweep (``report NAME``) runs
    in that workspace too."""
    command = next(c for n, c, _ in documented_commands(page) if n == line)
    if not does_work(command):
        return None
    words = shlex.split(command, comments=True)
    for other in PAGES[:PAGES.index(page)]:
        for n, c, _ in documented_commands(other):
            if shlex.split(c, comments=True) == words and does_work(c):
                return other, n
    return None


def not_run_reason(command: str) -> str | None:
    """Why a documented command is not run here (None: it runs)."""
    plain = " ".join(shlex.split(command, comments=True))
    if plain in NOT_RUN:
        return NOT_RUN[plain]
    not_here = re.search(r"\(([^()]*not run here)\)", command.partition("#")[2])
    return not_here.group(1) if not_here else None


# Left to `make test-all` (marked slow) to keep `make test` in its 8 minutes: a page (every command of it) or a
# command whose code path a faster test of `make test` runs, named here with the seconds it took on 2 cores.
SLOW = {
    "experiments/backbones.md": "29 s, 10 jobs; each backbone with TAM: tests/models/test_insertion.py",
    "experiments/ablation_kernel.md": "16 s, a sweep like ablation_alpha_beta's; its points: test_schema.py",
    "experiments/ablation_stages.md": "13 s, a sweep like ablation_alpha_beta's; its points: test_schema.py",
    "python -m tanet_lightning.train trainer=ddp_cpu model.sync_bn=true":
        "38 s, 2 processes; DDP + SyncBN on CPU: tests/scale/test_scale_ddp.py",
}


def is_slow(page: Path, command: str) -> bool:
    return str(page.relative_to(REPO)) in SLOW or " ".join(shlex.split(command, comments=True)) in SLOW


CASES = [pytest.param(page, n, cmd, id=f"{page.relative_to(REPO)}:{n}",
                      marks=[pytest.mark.slow] if is_slow(page, cmd) else [])
         for page in PAGES for n, cmd, _ in documented_commands(page)]


def test_the_docs_have_commands():
    assert len(CASES) > 20 and any("+experiment=ablation_alpha_beta" in c.values[2] for c in CASES)
    slow = {str(p.relative_to(REPO)) for p, _, _ in (c.values for c in CASES)}
    slow |= {" ".join(shlex.split(cmd, comments=True)) for _, _, cmd in (c.values for c in CASES)}
    assert set(SLOW) <= slow  # every entry still names a documented page or command


def test_a_report_runs_in_the_workspace_of_its_sweep():
    """Workspaces are per section, but `report temporal_modules --wandb` (its own README section) reads
    the Table 2 sweep run in another one: it must run there, after it."""
    readme = workspace_names(REPO / "README.md")
    lines = {n: c for n, c, _ in documented_commands(REPO / "README.md")}
    sweep = next(n for n, c in lines.items() if "+experiment=temporal_modules +preset=synthetic" in c)
    reports = [n for n, c in lines.items() if c.startswith("python -m tanet_lightning.report temporal_modules")]
    assert len(reports) == 2 and all(readme[n] == readme[sweep] and n > sweep for n in reports)
    assert len(set(readme.values())) > 2  # the other sections run apart, in parallel under xdist
    # experiments/temporal_modules.md documents the same sweep and report: they run once (README's), and
    # that page's report would read README's sweep, in README's workspace
    page = REPO / "experiments" / "temporal_modules.md"
    lines = {c: n for n, c, _ in documented_commands(page)}
    again = next(n for c, n in lines.items() if "+experiment=temporal_modules +preset=synthetic" in c)
    report = next(n for c, n in lines.items() if c.startswith("python -m tanet_lightning.report temporal_modules"))
    assert duplicate_of(page, again) == (REPO / "README.md", sweep)
    assert duplicate_of(page, report) == (REPO / "README.md", reports[0])
    assert workspace_names(page)[report] == readme[sweep]
    assert [(p, n) for p, n, _ in (c.values for c in CASES) if duplicate_of(p, n)] == [(page, again), (page, report)]


class Workspace:
    """One fresh working directory per page; placeholders filled from what earlier commands wrote."""

    def __init__(self, cwd: Path, data_dir: Path, launcher: Launcher | None):
        self.cwd = cwd
        self.env = {**command_env(), "TANET_DATA_DIR": str(data_dir)}
        self.launcher = launcher

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        if args[:2] == ["make", "train"]:  # the Makefile target is this command with ARGS appended
            makefile = (REPO / "Makefile").read_text()
            assert re.search(r"^train:.*\n\t\$\(PY\) -m tanet_lightning\.train \$\(ARGS\)$", makefile, re.M)
            args = ["python", "-m", "tanet_lightning.train", *shlex.split(" ".join(args[2:]).removeprefix("ARGS="))]
        assert args[0] == "python" and args[1] == "-m", f"not a python -m command: {args}"
        args = [sys.executable, *args[1:], *LIMITS.get(args[2], [])]
        args = [self.fill(a) for a in args]
        launched = self.launcher and self.launcher.run(args, self.cwd, self.env, timeout=1200)
        return launched or subprocess.run(args, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                          timeout=1200)

    def fill(self, arg: str) -> str:
        for word, value in (("CKPT", self.ckpt), ("SCORES_8F", self.scores), ("SCORES_16F", self.scores),
                            ("VIDEO", self.video), ("PEER_CKPT", self.peer_ckpt), ("K400_CLASSES", self.k400_classes),
                            ("MY_VIDEOS", self.my_videos), ("FINETUNED", self.finetuned)):
            if re.search(rf"\b{word}\b", arg):
                arg = re.sub(rf"\b{word}\b", str(value()), arg)
        return arg

    def ckpt(self) -> Path:
        ckpts = sorted(self.cwd.glob("logs/train/runs/*/checkpoints/last.ckpt"), key=os.path.getmtime)
        if not ckpts:  # the page has not run the main job yet: run it as documented
            assert self.run(["python", "-m", "tanet_lightning.train"]).returncode == 0
            return self.ckpt()
        return ckpts[0]

    def scores(self) -> Path:
        found = sorted(self.cwd.glob("logs/eval/runs/*/scores.npz"))
        if not found:
            proc = self.run(["python", "-m", "tanet_lightning.eval", f"ckpt_path={self.ckpt()}"])
            assert proc.returncode == 0, proc.stderr[-3000:]
            return self.scores()
        return found[0]

    def synthetic(self) -> Path:
        """The variant folder the documented commands read: the one of conf/data/synthetic.yaml's settings."""
        spec = SyntheticSpec(**OmegaConf.to_container(OmegaConf.load(REPO / "conf/data/synthetic.yaml").synthetic))
        return synthetic_dir(Path(self.env["TANET_DATA_DIR"]) / "synthetic", spec)

    def video(self) -> Path:
        path = self.synthetic() / "videos" / "test" / "rotate_cw_0000.mp4"
        if not path.is_file():  # the main job generates the synthetic videos
            self.ckpt()
        return path

    def peer_ckpt(self) -> Path:
        """A released-checkpoint stand-in: TANet-R50 8f, 400 classes, saved as the official TAM code saves."""
        path = self.cwd / "peer_official_tanet_r50_8f.pth.tar"
        if not path.is_file():
            import torch

            from tanet_lightning.models import create_video_model, to_peer_layout

            state = create_video_model("resnet50", "tam", num_classes=400, num_frames=8).state_dict()
            torch.save({"epoch": 100, "arch": "resnet50", "state_dict": to_peer_layout(state, "official")}, path)
        return path

    def k400_classes(self) -> Path:
        path = self.cwd / "kinetics400_classes.txt"
        path.write_text("".join(f"class_{i:03d}\n" for i in range(400)))
        return path

    def my_videos(self) -> Path:
        """MY_VIDEOS/<class>/*.mp4 from three synthetic classes (the training videos of the main job's data)."""
        root = self.cwd / "my_videos"
        if not root.is_dir():
            self.ckpt()  # the main job generates the synthetic videos
            src = self.synthetic() / "videos" / "train"
            for c in ("grow", "move_left", "shrink"):
                (root / c).mkdir(parents=True)
                for f in sorted(src.glob(f"{c}_*.mp4")):
                    shutil.copy(f, root / c / f.name)
        return root

    def finetuned(self) -> Path:
        ckpts = sorted(self.cwd.glob("logs/train/runs/*/checkpoints/last.ckpt"), key=os.path.getmtime)
        assert ckpts, "no checkpoint yet: the fine-tune command comes first"
        return ckpts[-1]


PROBE = """
import os, signal, subprocess, sys, time

print(sys.argv[1:], sys.argv[0] == __file__, sys.path[0] == os.getcwd(), __name__, os.getcwd(), os.environ["PROBE"])
os.write(2, b"C-level stderr\\n")
if sys.argv[1] == "raise":
    raise ValueError("an uncaught exception")
if sys.argv[1] == "signal":
    os.kill(os.getpid(), signal.SIGTERM)
if sys.argv[1] == "hang":
    print(subprocess.Popen(["sleep", "600"]).pid, flush=True)
    time.sleep(600)
if sys.argv[1] == "wait":
    print("PYTHONPATH entry on sys.path:", os.environ["PROBE_PATH"] in sys.path)
    print("waiting", flush=True)
    time.sleep(600)

import torch
from torch.utils.data import DataLoader

loader = DataLoader(list(range(10)), batch_size=3, num_workers=2,
                    worker_init_fn=lambda i: os.write(1, f"worker {i} says hi through fd 1\\n".encode()))
print("sum", sum(int(b.sum()) for b in loader), torch.get_num_threads())
sys.exit(int(sys.argv[1]))
"""


class TestLauncher:
    """The launcher runs a command as `python -m` does in a fresh process: same argv, sys.path, working
    directory, environment, output (C-level and DataLoader workers' included) and exit status."""

    @pytest.fixture
    def probe(self, tmp_path, launcher):
        if launcher is None:
            pytest.skip("TANET_DOCS_SUBPROCESS=1: no launcher")
        (tmp_path / "probe_module.py").write_text(PROBE)
        env = {**command_env(), "PROBE": "from the request"}

        def run(arg: str, timeout: float = 120):
            args = [sys.executable, "-m", "probe_module", arg]
            plain = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
            return launcher.run(args, tmp_path, env, timeout=timeout), plain

        return run

    def test_same_output_and_exit_status(self, probe):
        launched, plain = probe("3")
        # the DataLoader workers print concurrently: their lines may come in either order, in both runs
        def lines(text: str) -> list[str]:
            return sorted(text.splitlines())

        assert launched.returncode == plain.returncode == 3
        assert (lines(launched.stdout), lines(launched.stderr)) == (lines(plain.stdout), lines(plain.stderr))
        assert "['3'] True True __main__" in launched.stdout and "sum 45" in launched.stdout
        assert launched.stdout.count("says hi through fd 1") == 2 and "C-level stderr" in launched.stderr

    def test_an_uncaught_exception_or_a_signal(self, probe):
        launched, plain = probe("raise")
        assert launched.returncode == plain.returncode == 1
        assert launched.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1] == "ValueError: an uncaught exception"
        assert "Traceback" in launched.stderr and "launcher.py" not in launched.stderr
        launched, plain = probe("signal")
        assert launched.returncode == plain.returncode == -signal.SIGTERM

    def test_a_timeout_kills_the_command_and_its_children(self, tmp_path, launcher):
        if launcher is None:
            pytest.skip("TANET_DOCS_SUBPROCESS=1: no launcher")
        (tmp_path / "probe_module.py").write_text(PROBE)
        env = {**command_env(), "PROBE": ""}
        with pytest.raises(subprocess.TimeoutExpired) as timeout:
            launcher.run([sys.executable, "-m", "probe_module", "hang"], tmp_path, env, timeout=5)
        sleeper = int(timeout.value.stdout.splitlines()[-1])
        stat = Path(f"/proc/{sleeper}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone, or dead and not yet reaped


    def test_popen_runs_commands_side_by_side_and_signals_reach_them(self, tmp_path, launcher):
        """What the process tests need (tests/launcher.py `popen`): commands running at once, each its own
        pid to signal, stdout and stderr in one stream, an uncaught KeyboardInterrupt dying by SIGINT."""
        if launcher is None:
            pytest.skip("TANET_DOCS_SUBPROCESS=1: no launcher")
        (tmp_path / "probe_module.py").write_text(PROBE)
        extra = tmp_path / "extra"
        env = {**command_env(), "PROBE": "side by side", "PROBE_PATH": str(extra),
               "PYTHONPATH": os.pathsep.join([str(extra), os.environ.get("PYTHONPATH", "")])}
        args = [sys.executable, "-m", "probe_module", "wait"]
        plain = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        first, second = launcher.popen(args, tmp_path, env), launcher.popen(args, tmp_path, env)
        try:
            plain_lines = [plain.stdout.readline() for _ in range(4)]
            for launched in (first, second):
                while not launched.output.is_file() or "waiting" not in launched.output.read_text():
                    assert launched.poll() is None
                    time.sleep(0.05)
            assert first.pid != second.pid and first.poll() is None and second.poll() is None
            for proc in (first, plain):
                proc.send_signal(signal.SIGINT)
            assert first.wait(60) == plain.wait(60) == -signal.SIGINT
            assert second.poll() is None  # the other command runs on
            out, rest = first.communicate()[0], plain.communicate()[0]
            assert out.splitlines()[:4] == "".join(plain_lines).splitlines()
            assert "C-level stderr" in out and "PYTHONPATH entry on sys.path: True" in out
            assert out.splitlines()[-1] == rest.splitlines()[-1] == "KeyboardInterrupt"
            second.terminate()
            assert second.wait(60) == -signal.SIGTERM
        finally:
            for proc in (plain, first, second):
                proc.kill()


# (page, line) of each workspace's last command that runs here (CASES order: a workspace may span pages):
# after it, the workspace goes
LAST_RUN: dict[str, tuple[Path, int]] = {}
for _page, _n, _cmd in (c.values for c in CASES):
    if not not_run_reason(_cmd) and not duplicate_of(_page, _n):
        LAST_RUN[workspace_names(_page)[_n]] = (_page, _n)


def command_env() -> dict[str, str]:
    """The environment of every command: the test's, without TANET_* settings, with no W&B upload nor plot window."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANET_")}
    return {**env, "WANDB_MODE": "disabled", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


S3_SECTION = "README.md#Data beyond one disk"  # its s3:// commands run against a loopback S3 server
S3_BUCKET = "tanet-demo"


def start_s3(env: dict[str, str]):
    """An S3 server on the loopback address (moto's, a real HTTP S3 API) with the section's bucket; its
    endpoint and test credentials go into the workspace's environment, as a user's would."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
    return server


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory, default_data_dir, launcher):
    data_dir = default_data_dir  # one for every xdist worker: the videos are generated once
    made: dict[str, Workspace] = {}
    servers = []

    def get(name: str) -> Workspace:
        if name not in made:
            made[name] = Workspace(tmp_path_factory.mktemp(re.sub(r"\W+", "_", name)), data_dir, launcher)
            if name == S3_SECTION:
                servers.append(start_s3(made[name].env))
        return made[name]

    yield get
    for server in servers:
        server.stop()


def tidy(ws: Workspace, name: str, page: Path, line: int) -> None:
    """After a command passed: drop what no later command of the workspace reads (see the module docstring)."""
    if (page, line) == LAST_RUN[name]:
        shutil.rmtree(ws.cwd, ignore_errors=True)
        return
    for ckpt in ws.cwd.glob("logs/*/multiruns/**/*.ckpt"):
        ckpt.unlink()


def run_documented_command(workspaces, page: Path, line: int, command: str) -> None:
    if reason := not_run_reason(command):
        pytest.skip(reason)
    if first := duplicate_of(page, line):
        pytest.skip(f"the same command as {first[0].relative_to(REPO)}:{first[1]}: it runs once, there")
    args = shlex.split(command, comments=True)
    plain = " ".join(args)
    name = workspace_names(page)[line]
    ws = workspaces(name)
    proc = ws.run(args)
    output = proc.stdout + proc.stderr
    expected = expected_exit(command.partition("#")[2])
    assert proc.returncode == expected, f"{page.name}:{line} `{plain}` exited {proc.returncode}:\n{output[-4000:]}"
    if "needs the dataset" in command:  # the dataset is not here: one clear message, and what to run instead
        assert re.search(r"data\.\w+_ann", output) and "+preset=synthetic" in output, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
    tidy(ws, name, page, line)


def workspace_class(name: str, cases: list) -> type:
    """One test class per workspace: xdist's `--dist loadscope` runs a class in one worker, in order, and
    the classes in parallel (xdist_group marks would say it better, but `--dist loadgroup` does not group
    under pytest 9: it renames nodeids, which pytest 9 no longer lets a plugin do)."""

    @pytest.mark.parametrize("page, line, command", cases)
    def test_documented_command(self, workspaces, page, line, command):
        run_documented_command(workspaces, page, line, command)

    title = "".join(w.capitalize() for w in re.split(r"\W+|_", name.removesuffix(".md").replace(".md#", " ")))
    return type(f"Test{title}", (), {"test_documented_command": test_documented_command})


for _name in dict.fromkeys(workspace_names(c.values[0])[c.values[1]] for c in CASES):  # in page order
    _cls = workspace_class(_name, [c for c in CASES if workspace_names(c.values[0])[c.values[1]] == _name])
    globals()[_cls.__name__] = _cls
