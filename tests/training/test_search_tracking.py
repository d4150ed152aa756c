"""The ecosystem's search and tracking tools: Hydra's Optuna sweeper (hparams_search=...) and MLflow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tanet_lightning.base.errors import ConfigError
from tanet_lightning.config import schema
from tinyconf import TINY_RUN, TINY_SYNTHETIC, compose_config

optuna = pytest.importorskip("optuna")


def test_the_search_config_composes_and_validates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("train", ["hparams_search=tanet_optuna"])
    schema.validate(cfg, "train")
    assert cfg.optimized_metric == "val/top1_best"


def test_optimized_metric_must_be_a_logged_metric(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("train", ["optimized_metric=val/acc"])
    with pytest.raises(ConfigError, match="optimized_metric"):
        schema.validate(cfg, "train")


def _train(cwd, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "tanet_lightning.train", *args, *TINY_SYNTHETIC, *TINY_RUN, "torch_threads=1"]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.process
def test_a_second_launch_continues_the_study_and_mlflow_records_the_run(tmp_path):
    search = ["hparams_search=tanet_optuna", "hydra.sweeper.sampler.n_startup_trials=2", "hydra.sweep.dir=search"]
    _train(tmp_path, *search, "hydra.sweeper.n_trials=3")
    # the same seed: the second launch samples new points (tanet.search_seed), none of the first's again
    _train(tmp_path, *search, "hydra.sweeper.n_trials=2")
    study = optuna.load_study(study_name="hparams_search", storage=f"sqlite:///{tmp_path}/search/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)  # val/top1_best, a fraction
    jobs = [p for p in (tmp_path / "search").glob("*/run.json")]
    assert len(jobs) == 5  # one run directory per trial, none overwritten by the second launch
    report = (tmp_path / "search" / "report.md").read_text()
    assert report.count("| done |") == 5 and "not started" not in report

    mlflow = pytest.importorskip("mlflow")
    _train(tmp_path, "logger=mlflow")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/logs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert 0.0 <= runs[0].data.metrics["test/top1"] <= 1.0
    assert runs[0].data.params["model/temporal/name"] == "tam"


@pytest.mark.slow
@pytest.mark.process
def test_the_finishing_command_finishes_a_stopped_search(tmp_path):
    """Issue 27 item 8: after SIGTERM the printed command exited 0 but sampled new trials, leaving the stopped
    trial RUNNING and its run interrupted. Now it resumes that trial's run, tells the study its value, and
    samples only what the launch still owed (n_trials=2: one more)."""
    import json
    import re
    import shlex
    import signal
    import time
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "tanet_lightning.train", "hparams_search=tanet_optuna", "hydra.sweeper.n_trials=2",
           "hydra.sweep.dir=search", *TINY_SYNTHETIC, *TINY_RUN, "torch_threads=1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not any('"running"' in p.read_text() for p in (tmp_path / "search").glob("*/run.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    storage = f"sqlite:///{tmp_path}/search/optuna.db"
    assert [t.state.name for t in optuna.load_study(study_name="hparams_search", storage=storage).trials] == ["RUNNING"]
    (stopped,) = (tmp_path / "search").glob("*/run.json")
    assert json.loads(stopped.read_text())["state"] == "interrupted"

    finish = shlex.split(re.findall(r"finish it with: (.*)", out)[-1])
    assert finish[:3] == ["python", "-m", "tanet_lightning.train"] and finish[-1] == "ckpt_path=last"
    done = subprocess.run([sys.executable, *finish[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    trials = optuna.load_study(study_name="hparams_search", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"] and all(0 <= t.value <= 1 for t in trials)
    runs = {p.parent: json.loads(p.read_text()) for p in Path(tmp_path, "search").glob("*/run.json")}
    assert len(runs) == 2 and all(r["state"] == "finished" for r in runs.values())
    assert json.loads(stopped.read_text())["state"] == "finished"  # the stopped trial's own run, finished
    metrics = json.loads((stopped.parent / "metrics.json").read_text())
    assert trials[0].value == metrics["val/top1_best"]
