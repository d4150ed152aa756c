"""Stop signals at any moment of a real training process (runs/signals.py): SLURM's requeue signal
(USR1, with a fake `scontrol` on PATH) and SIGTERM are recorded as requeued / interrupted, and the same
command (+ ``ckpt_path=last`` after SIGTERM) finishes the run with an uninterrupted run's metrics.

The processes are forked from the preloaded launcher (tests/launcher.py); the run is tiny (resnet18,
2 epochs of 3 steps, deterministic kernels) so that one uninterrupted run, measured once per module, can
be compared with every interrupted and finished one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

import launcher as launched
from tinyconf import TINY_RUN, TINY_SYNTHETIC

HERE = Path(__file__).resolve().parent
RUN = [*TINY_SYNTHETIC, *TINY_RUN, "trainer.max_epochs=2", "trainer.deterministic=true",
       "model.backbone=resnet18", "model.pretrained=false", "+callbacks.probe._target_=run_probe.SlowCheckpointWrite"]
# what an `sbatch` job's task sees (one task); the job's name is not `bash`/`interactive`: a batch job
SLURM = dict(SLURM_JOB_ID="4242", SLURM_JOB_NAME="tanet", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
             SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost")
# a fake `scontrol`: records the call, then does what a requeue does to the running job: SLURM ends it
# with SIGTERM (and puts it back in the queue)
FAKE_SCONTROL = '#!/bin/sh\necho "$@" >> "{log}"\nkill -TERM $PPID\n'
COMPARED = ("test/top1", "test/top5", "val/top1", "val/top1_best", "val/loss", "train/loss_epoch")
# what a signal ends the run as: exit status, run.json state, what finishes it
ENDS = {signal.SIGUSR1: (138, "requeued", []), signal.SIGTERM: (143, "interrupted", ["ckpt_path=last"])}


def start(launcher, cwd: Path, data_dir: Path, *args: str, **env: str):
    """`python -m tanet_lightning.train` in a SLURM job (env), forked from the preloaded launcher."""
    bin_dir = cwd / "bin"
    if not bin_dir.is_dir():
        bin_dir.mkdir(parents=True)
        (bin_dir / "scontrol").write_text(FAKE_SCONTROL.format(log=cwd / "scontrol_calls.txt"))
        (bin_dir / "scontrol").chmod(0o755)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    full.update(SLURM, TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
                PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **env)
    return launched.popen(launcher, [sys.executable, "-m", "tanet_lightning.train", *RUN, *args], cwd, full)


def finish(proc) -> str:
    return proc.communicate(timeout=300)[0]


def the_run(cwd: Path) -> Path:
    (run,) = (cwd / "logs" / "train" / "runs").iterdir()
    return run


def state(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def wait_for_the_run(proc, cwd: Path) -> float:
    """Wait until the process has opened its run (run.json written); the time that took."""
    began, deadline = time.monotonic(), time.monotonic() + 300
    while not list(cwd.glob("logs/train/runs/*/run.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return time.monotonic() - began


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir, launcher) -> tuple[dict, float]:
    """The uninterrupted run's metrics, and how long its run lasted (from run.json to the process's end)."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    proc = start(launcher, cwd, data_dir)
    wait_for_the_run(proc, cwd)
    began = time.monotonic()
    log = finish(proc)
    assert proc.returncode == 0, log[-3000:]
    return json.loads((the_run(cwd) / "metrics.json").read_text()), time.monotonic() - began


def assert_finishes_like_the_reference(launcher, cwd: Path, data_dir: Path, signum: int, reference) -> None:
    """The command that finishes the stopped run (the same one; + ckpt_path=last after SIGTERM) ends
    exit 0, finished, with the uninterrupted run's metrics."""
    proc = start(launcher, cwd, data_dir, *ENDS[signum][2])
    log = finish(proc)
    assert proc.returncode == 0, log[-3000:]
    run = the_run(cwd)
    assert state(run)["state"] == "finished"
    got, want = json.loads((run / "metrics.json").read_text()), reference[0]
    for key in COMPARED:
        assert got[key] == pytest.approx(want[key], abs=1e-6), (key, log[-3000:])


@pytest.mark.heavy
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["USR1", "SIGTERM"])
def test_a_stop_signal_inside_a_checkpoint_write_is_recorded_and_the_run_finishes(
        tmp_path, data_dir, launcher, reference, signum):
    """The signal lands while Lightning writes epoch_000.ckpt (held there by run_probe.SlowCheckpointWrite):
    the write finishes, the run stops at the end of the next training batch (USR1: saving hpc_ckpt_1.ckpt
    there, then `scontrol requeue 4242`), is recorded requeued / interrupted (not failed), and finishes."""
    proc = start(launcher, tmp_path, data_dir, TANET_TEST_SLOW_SAVE="1")
    runs = tmp_path / "logs" / "train" / "runs"
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/saving")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signum)
    next(runs.glob("*/saving")).with_name("signalled").write_text("")  # the probe lets the write go on
    log = finish(proc)
    code, recorded, _ = ENDS[signum]
    assert proc.returncode == code, log[-3000:]
    run = the_run(tmp_path)
    assert state(run)["state"] == recorded, state(run)
    assert not (run / "metrics.json").exists() and "Restoring states" not in log  # nothing was tested
    assert (run / "checkpoints" / "epoch_000.ckpt").is_file()  # the write the signal landed in finished
    if signum == signal.SIGUSR1:
        assert state(run)["reason"] == "SLURM requeue signal: state saved in hpc_ckpt_1.ckpt"
        assert (tmp_path / "scontrol_calls.txt").read_text().split() == ["requeue", "4242"]
    else:
        assert state(run)["reason"] == "stopped by SIGTERM" and not (tmp_path / "scontrol_calls.txt").exists()
    assert_finishes_like_the_reference(launcher, tmp_path, data_dir, signum, reference)


def signals_at_random_moments(tmp_path, data_dir, launcher, reference, tries: int) -> None:
    """``tries`` runs, each sent USR1 or SIGTERM (alternately) after a random delay within the uninterrupted
    run's life (from its run.json on): set-up, training, a checkpoint write, validation, testing or the end.
    Each is recorded as requeued / interrupted (or had finished) and is finished by its command, every time.
    (Before the run exists, during the interpreter's start and Hydra's composition, nothing is recorded.)"""
    seed = os.environ.get("TANET_TEST_SEED", str(time.time_ns()))
    rng, ends = random.Random(seed), []
    for i in range(tries):
        signum = (signal.SIGUSR1, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, reference[1])
        cwd = tmp_path / f"try{i}"
        cwd.mkdir()
        proc = start(launcher, cwd, data_dir)
        wait_for_the_run(proc, cwd)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signum)
        log = finish(proc)
        what = (f"TANET_TEST_SEED={seed}, try {i}: {signal.Signals(signum).name} {delay:.2f} s into the run: "
                f"exit {proc.returncode}\n{log[-3000:]}")
        recorded = state(the_run(cwd))["state"]
        if proc.returncode == 0:  # it had finished before the signal came
            assert recorded == "finished", what
        else:
            code, want, _ = ENDS[signum]
            assert (proc.returncode, recorded) == (code, want), what
        ends.append(f"{delay:.2f} s: {recorded}")
        assert_finishes_like_the_reference(launcher, cwd, data_dir, signum, reference)
    print(f"TANET_TEST_SEED={seed}:", "; ".join(ends))


@pytest.mark.slow  # 3 interrupted runs and their finishing commands: ~3 min on 2 loaded cores
def test_stop_signals_at_random_moments_are_recorded_and_the_runs_finish(tmp_path, data_dir, launcher, reference):
    signals_at_random_moments(tmp_path, data_dir, launcher, reference, tries=3)


@pytest.mark.slow  # 16 interrupted runs and their finishing commands
def test_stop_signals_at_many_random_moments(tmp_path, data_dir, launcher, reference):
    signals_at_random_moments(tmp_path, data_dir, launcher, reference, tries=16)


@pytest.mark.heavy
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "SIGTERM"])
def test_a_stop_sent_to_the_whole_process_group_with_loader_workers_is_a_stop_not_a_failure(
        tmp_path, data_dir, launcher, signum):
    """A terminal's Ctrl-C and a scheduler's SIGTERM (SLURM's to the job step, `timeout`'s and `kill -- -PGID`
    to the group) reach every process, DataLoader workers included: the workers leave the stop to the run's
    process, which records it as interrupted (exit 128 + signal), and ``ckpt_path=last`` finishes the run.
    (A worker that stopped itself made the run `failed`, exit 1: "DataLoader worker ... killed by signal".)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    env.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, "-m", "tanet_lightning.train", *RUN, "data.num_workers=2", "trainer.max_epochs=3"]
    proc = launched.popen(launcher, args, tmp_path, env)  # the leader of its own process group
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        runs = list((tmp_path / "logs" / "train" / "runs").glob("*/csv"))
        if runs and any(runs[0].rglob("*.csv")):  # training has started: workers are alive
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signum)
    out = proc.communicate(timeout=240)[0]
    state = json.loads((the_run(tmp_path) / "run.json").read_text())
    assert proc.returncode == 128 + signum and state["state"] == "interrupted", (proc.returncode, state, out[-3000:])
    if signum != signal.SIGINT:  # how an interrupted run finishes does not depend on the signal: once is enough
        return
    done = launched.run(launcher, [*args, "ckpt_path=last"], tmp_path, env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads((the_run(tmp_path) / "run.json").read_text())["state"] == "finished"
