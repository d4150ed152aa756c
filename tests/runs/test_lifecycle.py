"""Nothing silently wrong, nothing lost: what a run does with bad input, stops, resumes and a second writer.

Real tiny runs throughout: a real Trainer, real mp4 files, real signals sent to a real child process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tanet_lightning.analysis import ensemble as ens
from tanet_lightning.base.errors import ConfigError, UserError
from tanet_lightning.data.formats import AnnotationError, read_rawframe_list, read_video_list
from tanet_lightning.eval import evaluate
from tanet_lightning.train import train
from tinyconf import TINY_RUN, TINY_SYNTHETIC, compose_config, tiny_synthetic_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One finished 2-epoch run, made once for the tests that read its files."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("trained"))
        mp.setenv("TANET_DATA_DIR", str(data_dir))
        cfg = compose_config("train", [*TINY_SYNTHETIC, *TINY_RUN, "trainer.max_epochs=2", "test=false"])
        metrics, objects = train(cfg)
    return Path(cfg.paths.output_dir), objects


def test_last_ckpt_is_the_latest_epoch_not_the_best(trained):
    out, _ = trained
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * 3  # 2 epochs of 3 batches


def test_train_false_tests_the_given_checkpoint(make_cfg, trained):
    out, _ = trained
    ckpt = out / "checkpoints" / "last.ckpt"
    tested, _ = train(make_cfg(["train=false", f"ckpt_path={ckpt}", "tags=[test_only]"]))
    evaluated, _ = evaluate(make_cfg([f"ckpt_path={ckpt}"], name="eval"))
    for key in ("test/top1", "test/top5", "test/mean_class_acc"):
        assert tested[key] == pytest.approx(evaluated[key], abs=1e-6), key
    with pytest.raises(ConfigError, match="train=false tests a checkpoint: give ckpt_path"):
        train(make_cfg(["train=false"]))


@pytest.mark.parametrize("override, key", [
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["optimizer.lr=-1e-3"], "optimizer.lr=-0.001"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
    (["seed=1.5"], "seed=1.5"),
    (["model/temporal=c2d", "model.tam.alpha=4"], "does not use it"),
    (["model.pretrained=true"], "model.pretrained_path=FILE"),  # no weight hub from here
    (["data.flip_label_map={0:9}"], r"flip_label_map names classes \[9\]"),
    (["paths.log_dir=/etc/hostname/logs"], "paths.log_dir=/etc/hostname/logs is not a writable directory"),
])
def test_values_that_can_never_work_fail_before_anything_runs(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        train(make_cfg(override))


@pytest.mark.parametrize("content, message", [
    ("not a checkpoint\n", "not a PyTorch checkpoint"),
    (b"\x00\x00\x00\x20ftypisom" + bytes(64), "not a PyTorch checkpoint"),  # an mp4 header
    ("truncated", "truncated"),
    ("bare", "bare weights file"),
])
def test_a_file_that_is_not_a_checkpoint_says_so(make_cfg, trained, tmp_path, content, message):
    path = tmp_path / "x.ckpt"
    good = trained[0] / "checkpoints" / "last.ckpt"
    if content == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif content == "bare":
        torch.save({"conv.weight": torch.zeros(1)}, path)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name in ("train", "eval"):
        with pytest.raises(UserError, match=message) as err:
            (train if name == "train" else evaluate)(make_cfg([f"ckpt_path={path}"], name=name))
        assert "weights_only=False" not in str(err.value)


def test_a_complete_dataset_is_used_without_writing_to_it(tmp_path):
    from tanet_lightning.data.synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir

    spec = SyntheticSpec(train_per_class=1, val_per_class=1, test_per_class=1, size=32, min_frames=8, max_frames=8)
    root = synthetic_dir(tmp_path / "synthetic", spec)
    ensure_synthetic(root, spec)
    for lock in tmp_path.rglob("*.lock"):
        lock.unlink()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    ensure_synthetic(root, spec)  # complete: no lock file, nothing written
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_eval_refuses_a_checkpoint_of_other_classes(make_cfg, trained, tmp_path):
    ckpt = torch.load(trained[0] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["num_classes"] = 400
    torch.save(ckpt, tmp_path / "k400.ckpt")
    with pytest.raises(UserError, match="400 classes but the data config gives 8"):
        evaluate(make_cfg([f"ckpt_path={tmp_path / 'k400.ckpt'}"], name="eval"))


def test_ensemble_refuses_files_of_different_videos(tmp_path):
    def scores(path, names):
        np.savez(path, video_idx=np.arange(len(names)), labels=np.zeros(len(names), int),
                 scores=np.random.default_rng(0).normal(size=(len(names), 3)), video_names=np.asarray(names))
        return str(path)

    a = scores(tmp_path / "a.npz", ["v1.mp4", "v2.mp4"])
    b = scores(tmp_path / "b.npz", ["v1.mp4", "v3.mp4"])
    with pytest.raises(ValueError, match="cover different videos"):
        ens.ensemble([a, b])


def test_keys_that_change_results_name_the_run(make_cfg):
    names = {Path(make_cfg([o]).paths.output_dir).name for o in ("data.num_workers=0", "data.num_workers=2",
                                                                 "torch_threads=1", "torch_threads=2")}
    assert len(names) == 4


def test_list_lines_that_do_not_match_their_format_name_file_and_line(tmp_path):
    ann = tmp_path / "list.txt"
    ann.write_text("a/b.mp4 3\nframes/c 120 5\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:2: expected 'path label'.*data\.format=rawframes"):
        read_video_list(ann, tmp_path)
    ann.write_text("frames/c 120 5\nframes/d x 5\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:2: num_frames must be an integer"):
        read_rawframe_list(ann, tmp_path)


def _video_list_copy(data_dir: Path, dest: Path, corrupt: dict[str, int] | None = None) -> Path:
    """The tiny synthetic set as a plain video_list dataset (lists name `videos/<split>/x.mp4`), with
    some files broken in different ways: 0 missing, 1 truncated, 2 garbage."""
    src = tiny_synthetic_dir(data_dir)
    shutil.copytree(src / "videos", dest / "videos")
    for split in ("train", "val", "test"):
        shutil.copy(src / f"{split}.txt", dest / f"{split}.txt")
    for name, how in sorted((corrupt or {}).items()):
        path = dest / name
        if how == 0:
            path.unlink()
        elif how == 1:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        else:
            path.write_bytes(os.urandom(2000))
    return dest


def _list_args(root: Path) -> list[str]:
    """data=video_list over ``root``, at the tiny synthetic sizes (its data.synthetic keys do not exist there)."""
    return ["data=video_list", f"data.root={root}", f"data.train_ann={root / 'train.txt'}",
            f"data.val_ann={root / 'val.txt'}", f"data.test_ann={root / 'test.txt'}",
            *[o for o in TINY_SYNTHETIC if not o.startswith("data.synthetic")]]


def test_a_malformed_test_list_fails_before_training(make_cfg, data_dir, tmp_path):
    train(make_cfg(["debug=fdr"]))  # makes sure the tiny synthetic set exists
    root = _video_list_copy(data_dir, tmp_path / "lists")
    (root / "test.txt").write_text("videos/test/move_left_0000.mp4 0 1\n")
    cfg = make_cfg([*_list_args(root), *TINY_RUN], tiny=False)
    with pytest.raises((AnnotationError, ConfigError), match=r"test\.txt:1"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


# ------------------------------------------------------------------------------------------------
# A whole run with faults: 10 % of the videos broken three ways, SIGTERM in the middle, resume.


def _run(cwd: Path, env: dict, args: list[str], stop_after_epoch: int | None = None) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "tanet_lightning.train", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_after_epoch is not None:  # SIGTERM once last.ckpt holds that epoch: mid-way through the next
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            lasts = list(cwd.glob("logs/train/runs/*/checkpoints/last.ckpt"))
            if lasts and torch.load(lasts[0], weights_only=True)["epoch"] >= stop_after_epoch:
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.2)
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


@pytest.mark.slow  # ~57 s on 2 shared cores: four training processes
@pytest.mark.process
def test_faults_sigterm_and_resume_end_like_an_uninterrupted_run(make_cfg, data_dir, tmp_path):
    train(make_cfg(["debug=fdr"]))  # the tiny synthetic set
    names = sorted(p.relative_to(tiny_synthetic_dir(data_dir)).as_posix()
                   for p in (tiny_synthetic_dir(data_dir) / "videos").rglob("*.mp4"))
    broken = {n: i % 3 for i, n in enumerate(names[:: len(names) // 4][:4])}  # 4 of 40 = 10 %
    root = _video_list_copy(data_dir, tmp_path / "faulty", broken)
    args = [*(a for a in _list_args(root) if a != "data.num_workers=0"), "data.max_bad_fraction=0.5",
            "data.num_workers=1", "trainer.max_epochs=4", "trainer.deterministic=true",
            "trainer.enable_progress_bar=false", "logger=csv"]
    env = {**os.environ, "WANDB_MODE": "disabled", "TANET_DATA_DIR": str(data_dir)}
    runs = {}
    for name in ("uninterrupted", "interrupted"):
        cwd = tmp_path / name
        cwd.mkdir()
        if name == "interrupted":
            rc, log = _run(cwd, env, args, stop_after_epoch=1)
            assert rc == 143, log[-3000:]
            run_dir = next(cwd.glob("logs/train/runs/*"))
            state = json.loads((run_dir / "run.json").read_text())
            assert state["state"] == "interrupted" and not (run_dir / "metrics.json").exists()
            rc, log = _run(cwd, env, [*args, "ckpt_path=last"])
        else:
            rc, log = _run(cwd, env, args)
        assert rc == 0, log[-3000:]
        runs[name] = next(cwd.glob("logs/train/runs/*"))
    a, b = (runs[k] for k in ("uninterrupted", "interrupted"))
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    for key in ("test/top1", "test/top5", "val/top1_best", "train/loss_epoch", "data/bad_files"):
        assert ma[key] == pytest.approx(mb[key], abs=1e-6), key
    assert ma["data/bad_files"] == len(broken) and ma["data/bad_files_list"] == "bad_files.tsv"
    bad = [(r.read_text().splitlines()) for r in (a / "bad_files.tsv", b / "bad_files.tsv")]
    assert sorted(ln.split("\t")[1] for ln in bad[0][1:]) == sorted(ln.split("\t")[1] for ln in bad[1][1:])
    assert {Path(ln.split("\t")[1]).name for ln in bad[0][1:]} == {Path(n).name for n in broken}
    hist = [list(csv.DictReader(open(r / "csv" / "metrics.csv"))) for r in (a, b)]
    keys = ("epoch", "step", "val/top1", "train/loss_epoch")
    assert [[row.get(k) for k in keys] for row in hist[0]] == [[row.get(k) for k in keys] for row in hist[1]]
    assert {row["epoch"] for row in hist[1] if row.get("val/top1")} == {"0", "1", "2", "3"}
