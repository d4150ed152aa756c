"""What re-running a command does to its run directory (runs/lifecycle.py), on real tiny runs.

In-process where one process is enough (a real Trainer, real mp4s; a real SIGTERM this process
sends itself at a hook of the run: ``sigterm_once``); real second processes where the case is about a
second process or the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

import launcher as launched
from lock_holder import hold
from tanet_lightning.base.errors import DataError, RunStateError
from tanet_lightning.runs import signals
from tanet_lightning.runs.callbacks import LastCheckpoint
from tanet_lightning.train import train
from tinyconf import TINY_RUN, TINY_SYNTHETIC

HERE = Path(__file__).resolve().parent


def snapshot(out: Path) -> dict[str, tuple[str, int]]:
    """Every file's bytes and mtime: a refused process must leave both alone."""
    return {str(p.relative_to(out)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file()}


def state(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def sigterm_once(monkeypatch, owner: type, hook: str, before: bool = False) -> None:
    """Send this process one SIGTERM at an exact moment of a real run: when ``owner.hook`` returns (or, with
    ``before``, as it is called). The handler runs at once, in the main thread (a signal to oneself), so the
    run sees the stop where a scheduler's would land, however loaded the machine is."""
    original, sent = getattr(owner, hook), []

    def send() -> None:
        sent.append(True)  # first: the handler may raise in os.kill
        os.kill(os.getpid(), signal.SIGTERM)

    def hooked(self, *args, **kwargs):
        if before and not sent:
            send()
        result = original(self, *args, **kwargs)
        if not sent:
            send()
        return result

    monkeypatch.setattr(owner, hook, hooked)


@pytest.mark.heavy  # a training and five refused or kept commands: 7.5 s
def test_a_finished_run_is_kept(make_cfg):
    # ckpt_path=last with nothing to resume starts (what a requeue script always passes)
    cfg = make_cfg(["ckpt_path=last"])
    first, _ = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert state(out)["state"] == "finished" and state(out)["attempts"] == 1
    before = snapshot(out)
    # the same command, or one that differs in a key that is not part of the run (logger=): refused
    for again in ([], ["logger=tensorboard"]):
        with pytest.raises(RunStateError, match=r"holds a finished run.*tags=\[again\].*overwrite=true"):
            train(make_cfg(again))
    # ckpt_path=last on a finished run: its metrics, nothing retrained or rewritten
    kept, objects = train(make_cfg(["ckpt_path=last"]))
    assert kept == json.loads((out / "metrics.json").read_text()) and "trainer" not in objects
    assert kept["val/top1_best"] == first["val/top1_best"] and "train/loss_epoch" in kept
    assert snapshot(out) == before
    # overwrite=true: deleted and run again
    (out / "checkpoints" / "stale.ckpt").write_text("old")
    train(make_cfg(["overwrite=true"]))
    assert not (out / "checkpoints" / "stale.ckpt").exists() and state(out)["state"] == "finished"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]


def test_another_config_in_the_same_directory_is_refused_naming_the_keys(make_cfg):
    cfg = make_cfg(["tags=[a]"])
    train(cfg)
    other = make_cfg(["tags=[a]", "optimizer.lr=0.5"])  # e.g. conf/optimizer/adamw.yaml edited since
    other.paths.output_dir = cfg.paths.output_dir
    before = snapshot(Path(cfg.paths.output_dir))
    with pytest.raises(RunStateError, match=r"another config \(optimizer\.lr: 0\.004 -> 0\.5\).*overwrite=true"):
        train(other)
    assert snapshot(Path(cfg.paths.output_dir)) == before


def test_zero_training_steps_fail_naming_batch_size(make_cfg):
    cfg = make_cfg(["data.batch_size=64"])  # 24 training videos: not one full batch
    expected = r"24 videos, fewer than one batch per device: data\.batch_size=64 x trainer\.devices \(world size 1\)"
    with pytest.raises(DataError, match=expected):
        train(cfg)
    out = Path(cfg.paths.output_dir)
    assert state(out)["state"] == "failed" and "DataError" in state(out)["reason"]
    assert not (out / "metrics.json").exists()


@pytest.mark.heavy  # three trainings: 11.4 s
def test_interrupted_run_resumes_only_when_asked_and_ends_like_an_uninterrupted_one(make_cfg, monkeypatch):
    common = ["trainer.deterministic=true", "trainer.max_epochs=2"]
    full, _ = train(make_cfg([*common, "tags=[uninterrupted]"]))
    cfg = make_cfg(common)
    out = Path(cfg.paths.output_dir)
    sigterm_once(monkeypatch, LastCheckpoint, "on_train_epoch_end")  # once last.ckpt holds epoch 0
    with pytest.raises(signals.Stopped) as stop:
        train(cfg)
    assert stop.value.code == 143 and (out / "checkpoints" / "last.ckpt").is_file()
    assert state(out)["state"] == "interrupted" and not (out / "metrics.json").exists()
    before = snapshot(out)
    with pytest.raises(RunStateError, match=r"unfinished run \(interrupted: stopped by SIGTERM\): resume it with "
                                             r"the same command \+ ckpt_path=last, or .*overwrite=true"):
        train(make_cfg(common))
    assert snapshot(out) == before
    resumed, _ = train(make_cfg([*common, "ckpt_path=last"]))
    assert state(out)["state"] == "finished" and state(out)["attempts"] == 2
    for key in ("test/top1", "test/top5", "val/top1", "val/top1_best", "train/loss_epoch"):
        assert resumed[key] == pytest.approx(full[key], abs=1e-6), key


def test_sigterm_before_the_first_epoch_then_ckpt_path_last_starts_again(make_cfg, monkeypatch):
    cfg = make_cfg(["tags=[early]"])
    out = Path(cfg.paths.output_dir)
    sigterm_once(monkeypatch, signals.StopAtSafePoints, "on_train_start", before=True)
    with pytest.raises(signals.Stopped):
        train(cfg)
    assert state(out)["state"] == "interrupted" and not (out / "checkpoints" / "last.ckpt").exists()
    metrics, _ = train(make_cfg(["tags=[early]", "ckpt_path=last"]))  # what the stop message says to run
    assert "test/top1" in metrics and state(out)["state"] == "finished" and state(out)["attempts"] == 1


# ------------------------------------------------------------------------------------------------
# real processes: the CLI


def cli(launcher, cwd: Path, data_dir: Path, *args: str, **env: str):
    """`python -m tanet_lightning.train` as a process (forked from the preloaded launcher: tests/launcher.py)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    full.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **env)
    return launched.popen(launcher, [sys.executable, "-m", "tanet_lightning.train", *TINY_SYNTHETIC, *TINY_RUN, *args],
                          cwd, full)


@pytest.mark.heavy
def test_a_process_refused_by_the_run_lock_writes_nothing(tmp_path, data_dir, make_cfg, launcher):
    out = Path(make_cfg().paths.output_dir)  # the directory the CLI below runs in (tmp_path is the cwd)
    out.mkdir(parents=True)
    holder = hold(launcher, out, tmp_path)  # a real second process holding the run directory
    try:
        before = snapshot(out)
        proc = cli(launcher, tmp_path, data_dir)
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 2, log[-3000:]
        assert f"another process (pid {holder.pid} on" in log
        assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [".lock"]  # no .hydra, no log
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # 3 tiny runs in subprocesses
def test_sigterm_while_testing_then_resume_keeps_the_fit_metrics_and_tests_a_checkpoint_that_exists(
        tmp_path, data_dir, launcher):
    ref = tmp_path / "ref"
    ref.mkdir()
    proc = cli(launcher, ref, data_dir)
    assert proc.wait(timeout=300) == 0, proc.communicate()[0][-3000:]
    want = json.loads(next(ref.glob("logs/train/runs/*/metrics.json")).read_text())

    probe = "+callbacks.probe._target_=run_probe.PauseInTest"
    proc = cli(launcher, tmp_path, data_dir, probe, TANET_TEST_PAUSE="1")
    runs = tmp_path / "logs" / "train" / "runs"
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/paused")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, log[-3000:]
    (out,) = runs.iterdir()
    assert state(out)["state"] == "interrupted" and not (out / "metrics.json").exists()
    assert "val/top1_best" in state(out)["fit_metrics"]
    for p in (out / "checkpoints").glob("epoch_*.ckpt"):  # deleted to save disk: the restored best is gone
        p.unlink()
    proc = cli(launcher, tmp_path, data_dir, probe, "ckpt_path=last")
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-3000:]
    assert "no monitored checkpoint exists" in log and "testing" in log
    got = json.loads((out / "metrics.json").read_text())
    for key in ("test/top1", "val/top1", "val/top1_best", "train/loss_epoch"):  # 1 epoch: last == best
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert state(out)["state"] == "finished"


def test_checkpoint_restored_best_path_is_not_trusted(tmp_path):
    """(unit) the fallback order when the best path is gone: best remaining epoch by saved score."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tanet_lightning.train import _best_checkpoint

    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val/top1", mode="max")
    key = cb.state_key
    for name, score in (("epoch_000.ckpt", 0.5), ("epoch_002.ckpt", 0.25)):
        torch.save({"callbacks": {key: {"current_score": torch.tensor(score)}}}, tmp_path / name)
    cb.best_model_path = str(tmp_path / "epoch_001.ckpt")  # restored from an older state: gone

    class T:
        checkpoint_callback = cb

    assert _best_checkpoint(T()) == str(tmp_path / "epoch_000.ckpt")
