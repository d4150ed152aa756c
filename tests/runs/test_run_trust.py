"""Nothing a run saved is lost or silently replaced (eval over eval, resume over damaged checkpoints, a broken
run.json): real tiny runs.

- an evaluation is a run of its checkpoint: another checkpoint is another directory, a finished one is kept;
- ``ckpt_path=last`` resumes from the newest loadable checkpoint of any kind, never deletes saved ones;
- ``hydra.job.chdir=true``: relative paths still resolve against the launch directory;
- a broken ``run.json`` is one refusal naming the file, and nothing is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import pytest
import torch
from test_run_directories import sigterm_once, snapshot, state

import launcher as launched
from tanet_lightning.analysis import ensemble as ens
from tanet_lightning.base.errors import RunStateError
from tanet_lightning.eval import evaluate
from tanet_lightning.runs import lifecycle, signals
from tanet_lightning.runs.callbacks import LastCheckpoint
from tanet_lightning.train import train
from tinyconf import TINY_RUN, TINY_SYNTHETIC, tiny_synthetic_dir

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------
# item 2: eval -> eval (another checkpoint) -> ensemble


@pytest.mark.heavy  # trains, then three evaluations
def test_eval_of_another_checkpoint_is_another_run_and_a_finished_eval_is_kept(make_cfg, tmp_path):
    _, objects = train(make_cfg(["test=false"]))
    first = Path(objects["trainer"].checkpoint_callback.dirpath) / "last.ckpt"
    other = tmp_path / "other.ckpt"  # another model: every weight moved
    ckpt = torch.load(first, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other)

    cfg_a = make_cfg([f"ckpt_path={first}"], name="eval")
    evaluate(cfg_a)
    out_a = Path(cfg_a.paths.output_dir)
    kept = snapshot(out_a)
    assert state(out_a)["state"] == "finished"
    assert state(out_a)["config"]["evaluated.path"] == str(first)
    cfg_b = make_cfg([f"ckpt_path={other}"], name="eval")
    evaluate(cfg_b)
    out_b = Path(cfg_b.paths.output_dir)
    assert out_b != out_a and snapshot(out_a) == kept  # the first model's results are still its own
    combined = ens.ensemble([str(out_a / "scores.npz"), str(out_b / "scores.npz")])
    assert combined is not None

    with pytest.raises(RunStateError, match=r"finished evaluation of .*last\.ckpt.*overwrite=true"):
        evaluate(make_cfg([f"ckpt_path={first}"], name="eval"))
    assert snapshot(out_a) == kept
    torch.save(ckpt, first)  # the same path, another file (a retrained model): not the evaluation kept
    with pytest.raises(RunStateError, match=r"another config \(evaluated\.bytes.*evaluated\.sha256"):
        evaluate(make_cfg([f"ckpt_path={first}"], name="eval"))
    assert snapshot(out_a) == kept
    evaluate(make_cfg([f"ckpt_path={first}", "overwrite=true"], name="eval"))
    assert state(out_a)["state"] == "finished" and snapshot(out_a) != kept


# ------------------------------------------------------------------------------------------------
# item 5: ckpt_path=last when last.ckpt is gone or damaged


@pytest.mark.heavy  # two trainings
def test_resume_without_last_ckpt_uses_the_newest_loadable_checkpoint_and_deletes_nothing(make_cfg, caplog,
                                                                                         monkeypatch):
    common = ["trainer.max_epochs=2", "tags=[resume]"]
    cfg = make_cfg(common)
    out = Path(cfg.paths.output_dir)
    last, epoch0 = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "epoch_000.ckpt"
    sigterm_once(monkeypatch, LastCheckpoint, "on_train_epoch_end")  # once last.ckpt holds epoch 0
    with pytest.raises(signals.Stopped):
        train(cfg)
    assert state(out)["state"] == "interrupted" and epoch0.is_file()

    # a truncated last.ckpt (killed while writing): skipped, named; epoch_000.ckpt holds the same step
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    caplog.set_level(logging.WARNING, "tanet_lightning")
    assert lifecycle.decide(make_cfg([*common, "ckpt_path=last"]), out).resume_from == str(epoch0)
    assert any("last.ckpt cannot be loaded" in r.getMessage() for r in caplog.records)

    # no checkpoint loads: refused, nothing deleted
    saved = epoch0.read_bytes()
    epoch0.write_bytes(saved[:1000])
    before = snapshot(out)
    with pytest.raises(RunStateError, match=r"checkpoints cannot resume it.*nothing was deleted.*overwrite=true"):
        train(make_cfg([*common, "ckpt_path=last"]))
    assert snapshot(out) == before

    # last.ckpt deleted: resumed from epoch_000.ckpt, the history kept
    epoch0.write_bytes(saved)
    last.unlink()
    history = sorted(out.rglob("metrics.csv"))
    assert history
    metrics, _ = train(make_cfg([*common, "ckpt_path=last"]))
    assert state(out)["state"] == "finished" and state(out)["attempts"] == 2
    assert state(out)["resumed_from"] == str(epoch0) and "test/top1" in metrics
    assert all(p.is_file() for p in history)
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1


# ------------------------------------------------------------------------------------------------
# item 11: a broken run.json


@pytest.mark.parametrize("text, problem", [
    ('{"state": "finished", "config"', "is not valid JSON"),
    ("", "is empty"),
    ("[1, 2]", "holds a JSON list"),
    ('{"config": {}}', "has no state"),
    ('{"state": "done"}', "holds the state 'done', not one of"),
])
def test_a_broken_run_json_is_refused_naming_the_file(make_cfg, text, problem):
    cfg = make_cfg(["tags=[broken]"])
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True)
    (out / "run.json").write_text(text)
    before = snapshot(out)
    with pytest.raises(RunStateError) as err:
        train(cfg)
    message = str(err.value)
    assert f"{out / 'run.json'} {problem}" in message and "overwrite=true" in message and "delete" in message
    after = snapshot(out)
    assert after.pop(".lock", ("", 0))[0] == hashlib.sha256(b"").hexdigest()  # the run lock, empty: unclaimed
    assert after == before
    # overwrite=true starts again over it
    assert lifecycle.decide(make_cfg(["tags=[broken]", "overwrite=true"]), out).record.get("clear")


# ------------------------------------------------------------------------------------------------
# item 9 (and 11's exit status): real processes


def _app(launcher, app: str, cwd: Path, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    env.update(WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = launched.popen(launcher, [sys.executable, "-m", f"tanet_lightning.{app}", *TINY_SYNTHETIC, *args], cwd, env)
    log = proc.communicate(timeout=600)[0]
    return proc.returncode, log


@pytest.mark.slow  # ~34 s on 2 shared cores: a train and two eval processes
def test_chdir_true_resolves_relative_paths_against_the_launch_directory(tmp_path, data_dir, launcher):
    tiny_synthetic_dir(data_dir)  # the pre-generated set, reached through a relative path
    (tmp_path / "data").symlink_to(data_dir)
    before = sorted(str(p) for p in data_dir.rglob("*") if ".lock" not in p.name)
    rc, log = _app(launcher, "train", tmp_path, *TINY_RUN, "test=false", "hydra.job.chdir=true", "paths.data_dir=data")
    assert rc == 0, log[-3000:]
    (out,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert not (out / "data").exists() and state(out)["state"] == "finished"
    assert sorted(str(p) for p in data_dir.rglob("*") if ".lock" not in p.name) == before  # nothing generated
    ckpt = (out / "checkpoints" / "last.ckpt").relative_to(tmp_path)  # a relative ckpt_path
    rc, log = _app(launcher, "eval", tmp_path, "hydra.job.chdir=true", "paths.data_dir=data", f"ckpt_path={ckpt}",
                   "trainer.enable_progress_bar=false")
    assert rc == 0, log[-3000:]
    (ev,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    assert (ev / "scores.npz").is_file() and not (ev / "data").exists()
    assert state(ev)["config"]["evaluated.path"] == str(tmp_path / ckpt)

    # a broken run.json from the command line: exit 2, one message naming it, nothing written
    (ev / "run.json").write_text('{"state": ')
    before = snapshot(ev)
    rc, log = _app(launcher, "eval", tmp_path, "paths.data_dir=data", f"ckpt_path={ckpt}",
                   "trainer.enable_progress_bar=false")
    assert rc == 2 and f"{ev / 'run.json'} is not valid JSON" in log and "Traceback" not in log, log[-3000:]
    assert snapshot(ev) == before
