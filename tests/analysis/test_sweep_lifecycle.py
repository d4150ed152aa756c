"""A sweep's life: stopped by SIGTERM it exits non-zero and reports every point (run or not); re-run into
its own directory it does not keep stale failure markers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tanet_lightning.analysis.report import collect, group_rows

LIMITS = ["logger=csv", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
          "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "callbacks.model_summary=null"]


def _sweep(cwd: Path, data_dir: Path, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "TANET_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "tanet_lightning.train", "-m", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> int:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return proc.returncode


@pytest.mark.process
def test_sigterm_stops_the_sweep_non_zero_and_the_report_lists_every_point(tmp_path, data_dir, tiny_synthetic):
    proc = _sweep(tmp_path, data_dir, ["model.tam.alpha=1,2,4", *tiny_synthetic, *LIMITS])
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if list(tmp_path.glob("logs/train/multiruns/*/*/*/metrics.json")):  # the first job has finished
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 143, out[-3000:]
    sweep = next(tmp_path.glob("logs/train/multiruns/*/*"))
    assert (sweep / "report.md").is_file()
    jobs = collect(sweep)
    status = sorted(j.status for j in jobs)
    assert len(jobs) == 3 and status[0] == "done" and "not started" in status, status
    assert set(status) <= {"done", "interrupted", "not started"}
    row_status = " ".join(r.status for r in group_rows(jobs, "default"))
    assert "not started" in (sweep / "report.md").read_text() and "not started" in row_status


@pytest.mark.slow  # ~32 s on 2 shared cores: two sweeps
@pytest.mark.process
def test_a_rerun_into_the_same_sweep_directory_clears_old_failure_markers(tmp_path, data_dir, tiny_synthetic):
    args = ["model.tam.alpha=1,2", *tiny_synthetic, *LIMITS, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert _finish(_sweep(tmp_path, data_dir, args)) == 0
    job = next(j.path for j in collect(tmp_path / "sweep") if j.overrides["model.tam.alpha"] == "1")
    (job / "FAILED").write_text("Traceback ...\nRuntimeError: an old failure\n")
    assert {j.status for j in collect(tmp_path / "sweep")} == {"done", "failed"}
    assert [j.reason for j in collect(tmp_path / "sweep") if j.status == "failed"] == ["RuntimeError: an old failure"]
    assert _finish(_sweep(tmp_path, data_dir, args)) == 0
    assert {j.status for j in collect(tmp_path / "sweep")} == {"done"}
