"""A sweep's life: stopped by SIGTERM or Ctrl-C it exits 143/130 and reports every point (run or not);
the same command + ``hydra.sweep.dir=<dir> ckpt_path=last`` finishes it (done jobs kept, the others run);
a second launch into a running sweep's directory is refused; a job whose directory another process holds
is reported as refused without a mark left in that directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import launcher as launched
from lock_holder import hold
from tanet_lightning.analysis.report import collect, group_rows

pytestmark = pytest.mark.heavy  # real sweeps in subprocesses

LIMITS = ["logger=csv", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
          "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "callbacks.model_summary=null"]


PROBES = Path(__file__).resolve().parents[1] / "runs"  # run_probe.py
PAUSE = "+callbacks.probe._target_=run_probe.PauseInLaterJob"


def _sweep(launcher, cwd: Path, data_dir: Path, args: list[str], pause: Path | None = None):
    """`python -m tanet_lightning.train -m ...` as a process, forked from the preloaded launcher (tests/launcher.py);
    ``pause``: the sweep directory whose second job waits in its test phase for the test's signal (with PAUSE
    among ``args``)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "TANET_DATA_DIR": str(data_dir),
           "PYTHONPATH": os.pathsep.join([str(PROBES), os.environ.get("PYTHONPATH", "")])}
    if pause is not None:  # the probe is in the command (PAUSE) either way: a resumed sweep is the same config
        env["TANET_TEST_PAUSE_SWEEP"] = str(pause)
    return launched.popen(launcher, [sys.executable, "-m", "tanet_lightning.train", "-m", *args], cwd, env)


def _stop_in_second_job(proc: subprocess.Popen, sweep: Path, signum: int) -> str:
    """Signal the sweep once its second job waits in its test phase (run_probe.PauseInLaterJob): the first job
    is done, the third not started, however late this process gets the CPU on a loaded machine."""
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not list(sweep.glob("*/paused")):
        time.sleep(0.2)
    if proc.poll() is None:
        proc.send_signal(signum)
    return proc.communicate(timeout=600)[0]


@pytest.mark.slow  # two sweep launches of 3 tiny jobs
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_sweep_reports_every_point_and_one_command_finishes_it(tmp_path, data_dir, tiny_synthetic,
                                                                         signum, code, launcher):
    sweep = tmp_path / "sweep"
    args = ["model.tam.alpha=1,2,4", *tiny_synthetic, *LIMITS, f"hydra.sweep.dir={sweep}", PAUSE]
    proc = _sweep(launcher, tmp_path, data_dir, args, pause=sweep)
    out = _stop_in_second_job(proc, sweep, signum)
    assert proc.returncode == code, out[-3000:]
    assert (sweep / "report.md").is_file()
    jobs = collect(sweep)
    status = sorted(j.status for j in jobs)
    assert len(jobs) == 3 and status[0] == "done" and "not started" in status, status
    assert set(status) <= {"done", "interrupted", "not started"}
    row_status = " ".join(r.status for r in group_rows(jobs, "default"))
    assert "not started" in (sweep / "report.md").read_text() and "not started" in row_status
    assert f"hydra.sweep.dir={sweep} ckpt_path=last" in out  # the command that finishes it is printed
    done = next(j.path for j in jobs if j.status == "done")
    kept = (done / "metrics.json").stat().st_mtime_ns

    proc = _sweep(launcher, tmp_path, data_dir, [*args, "ckpt_path=last"])
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log[-3000:]
    assert {j.status for j in collect(sweep)} == {"done"} and len(collect(sweep)) == 3
    assert (done / "metrics.json").stat().st_mtime_ns == kept  # the finished job was kept, not run again
    for job in collect(sweep):
        assert json.loads((job.path / "run.json").read_text())["state"] == "finished"


def test_ctrl_c_ends_a_sweep_with_status_130_and_its_report(tmp_path, data_dir, tiny_synthetic, launcher):
    sweep = tmp_path / "sweep"
    args = ["model.tam.alpha=1,2", *tiny_synthetic, *LIMITS, f"hydra.sweep.dir={sweep}", PAUSE]
    proc = _sweep(launcher, tmp_path, data_dir, args, pause=sweep)
    out = _stop_in_second_job(proc, sweep, signal.SIGINT)
    assert proc.returncode == 130, out[-3000:]  # Lightning alone would make Ctrl-C exit 1
    assert (sweep / "report.md").is_file()


def test_a_second_launch_into_a_running_sweep_is_refused(tmp_path, data_dir, tiny_synthetic, launcher):
    sweep = tmp_path / "sweep"
    args = ["model.tam.alpha=1,2", *tiny_synthetic, *LIMITS, f"hydra.sweep.dir={sweep}"]
    first = _sweep(launcher, tmp_path, data_dir, args)
    try:
        deadline = time.time() + 300
        while not (sweep / ".sweep.lock").is_file() or not (sweep / ".sweep.lock").read_text():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        first.send_signal(signal.SIGSTOP)  # still running (and holding its lock) however fast its jobs are
        second = _sweep(launcher, tmp_path, data_dir, args)
        log = second.communicate(timeout=300)[0]
        assert second.returncode == 2, log[-3000:]
        assert f"another launch (pid {first.pid}) is running the sweep in {sweep}" in log
    finally:
        first.kill()
        first.wait()


def test_a_job_refused_by_the_run_lock_leaves_its_directory_alone(tmp_path, data_dir, tiny_synthetic, launcher):
    sweep = tmp_path / "sweep"
    args = ["model.tam.alpha=1,2", *tiny_synthetic, *LIMITS, f"hydra.sweep.dir={sweep}"]
    first = _sweep(launcher, tmp_path, data_dir, ["model.tam.alpha=1", *args[1:]])  # job alpha=1 alone
    assert first.wait(timeout=600) == 0, first.communicate()[0][-3000:]
    (held,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    holder = hold(launcher, held, tmp_path)  # another process holding that job's directory
    try:
        before = sorted((p.relative_to(held), p.stat().st_mtime_ns) for p in held.rglob("*"))
        proc = _sweep(launcher, tmp_path, data_dir, [*args, "ckpt_path=last"])
        log = proc.communicate(timeout=600)[0]
        assert proc.returncode == 1, log[-3000:]  # the sweep did not finish: one job was refused
        assert "refused:" in log and held.name in log
        assert sorted((p.relative_to(held), p.stat().st_mtime_ns) for p in held.rglob("*")) == before
        assert {j.status for j in collect(sweep)} == {"done"}  # its finished run is still reported as such
    finally:
        holder.kill()
        holder.wait()
