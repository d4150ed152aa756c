"""Runs that cannot give a result end `failed` with one message that names the step or the path and the fix
(issue 27 items 7 and 11): a loss that became non-finite, a full disk; and a search of no trials is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import launcher as launched
from tinyconf import TINY_RUN, TINY_SYNTHETIC


def _env(data_dir) -> dict[str, str]:
    env = {**os.environ, "TANET_DATA_DIR": str(data_dir), "PYTHONPATH": os.pathsep.join(sys.path),
           "OMP_NUM_THREADS": "1"}
    for var in ("TANET_LOG_DIR", "TANET_ROOT"):
        env.pop(var, None)
    return env


def _only_run(logs: Path) -> Path:
    (run,) = logs.glob("train/runs/*/run.json")
    return run.parent


@pytest.mark.process
def test_a_loss_that_becomes_nan_fails_the_run_naming_the_step(tmp_path, data_dir, launcher):
    cmd = [sys.executable, "-m", "tanet_lightning.train", "optimizer.lr=1e30", *TINY_SYNTHETIC, *TINY_RUN,
           "torch_threads=1"]
    proc = launched.run(launcher, cmd, tmp_path, _env(data_dir), timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text[-3000:]
    assert "Traceback" not in proc.stderr
    assert "the training loss became nan at global step" in text and "lower optimizer.lr (now 1e+30)" in text
    run = _only_run(tmp_path / "logs")
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "failed" and "TrainingDiverged" in state["reason"] and "(epoch 0, batch" in state["reason"]
    assert not (run / "metrics.json").exists()


@pytest.mark.process
def test_a_full_disk_fails_the_run_naming_its_directory(tmp_path, data_dir):
    """A real full disk: the run directory on a 2 MB tmpfs (its own mount namespace: no root needed, nothing
    mounted outside the test), where the first checkpoint does not fit."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user+mount namespaces here to mount a small tmpfs in")
    full = tmp_path / "full"
    full.mkdir()
    train = [sys.executable, "-m", "tanet_lightning.train", f"paths.log_dir={full}", *TINY_SYNTHETIC, *TINY_RUN,
             "torch_threads=1", "callbacks.data_wait_monitor=null"]
    script = (f"mount -t tmpfs -o size=2m tmpfs {full} && {' '.join(train)}; echo rc=$?; "
              f"cat {full}/train/runs/*/run.json")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=tmp_path,
                          env=_env(data_dir), capture_output=True, text=True, timeout=600)
    logged, rest = done.stdout.split("rc=", 1)
    code, state = rest.split("\n", 1)
    assert code == "2", done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    text = logged + done.stderr
    assert "no space left on the device of the run directory" in text and "free space there" in text
    state = json.loads(state)
    assert state["state"] == "failed" and state["reason"].startswith("DiskFull: no space left")


def test_a_search_of_no_trials_is_refused_before_its_directory_exists(tmp_path, monkeypatch, caplog):
    pytest.importorskip("optuna")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tanet_lightning.config import config_dir
    from tanet_lightning.sweep import SWEEP_DIR_ENV, SweepCallback

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SWEEP_DIR_ENV, raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=tanet_optuna", "hydra.sweeper.n_trials=0",
                                          f"hydra.sweep.dir={tmp_path}/search"], return_hydra_config=True)
    with pytest.raises(SystemExit) as exit_:
        SweepCallback().on_multirun_start(config=cfg)
    assert exit_.value.code == 2
    assert "hydra.sweeper.n_trials=0 must be an integer >= 1: give hydra.sweeper.n_trials=N" in caplog.text
    assert not (tmp_path / "search").exists()
