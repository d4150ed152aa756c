"""End to end on real files: train on the synthetic videos, predict like eval does, fine-tune the model on a
video_folder of some of the classes (model.init_from), predict with the fine-tuned checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tanet_lightning.data.synthetic import CLASS_NAMES
from tanet_lightning.eval import evaluate
from tanet_lightning.predict import Predictor
from tanet_lightning.train import train
from tinyconf import tiny_synthetic_dir

SUBSET = ["shrink", "grow", "move_left"]  # sorted by video_folder: grow, move_left, shrink
SMALL = ["data.short_side=32", "data.crop_size=32", "data.test_crop_size=32", "data.num_workers=0",
         "data.batch_size=4", "data.num_frames=4", "trainer.max_epochs=1", "trainer.accelerator=cpu",
         "trainer.enable_progress_bar=false", "callbacks.model_summary=null"]


def _video_folder(data_dir, dest):
    for c in SUBSET:
        (dest / c).mkdir(parents=True)
        for f in sorted((tiny_synthetic_dir(data_dir) / "videos" / "train").glob(f"{c}_*.mp4")):
            shutil.copy(f, dest / c / f.name)
    return dest


@pytest.mark.slow  # two trainings, an eval and a CLI run: ~60 s on 2 shared CPU cores (the README commands run in CI)
def test_train_predict_finetune_predict(make_cfg, data_dir, tmp_path, caplog):
    _, objs = train(make_cfg([]))
    base = objs["trainer"].checkpoint_callback.best_model_path
    saved = torch.load(base, map_location="cpu", weights_only=True)
    assert saved["class_names"] == CLASS_NAMES
    assert saved["data_config"]["num_frames"] == 4 and saved["data_config"]["crop_size"] == 32

    # predict reads a video exactly as the test protocol does: its probabilities are eval's scores
    _, ev = evaluate(make_cfg([f"ckpt_path={base}"], name="eval"))
    scores = np.load(ev["model"].scores_path)
    predictor = Predictor.from_checkpoint(base)
    assert not predictor.model.training
    for name, s in list(zip(scores["video_names"], scores["scores"]))[:3]:
        probs = predictor.scores(predictor.clip_views(name))
        np.testing.assert_allclose(probs.numpy(), torch.from_numpy(s).softmax(-1).numpy(), atol=1e-5)

    # fine-tune on 3 of the 8 classes: every weight but the classifier comes from the base model
    folder = _video_folder(data_dir, tmp_path / "my_videos")
    cfg = make_cfg(["+experiment=finetune", f"model.init_from={base}", f"data.root={folder}", *SMALL], tiny=False)
    model = instantiate(cfg.model, num_classes=3)
    with caplog.at_level(logging.INFO, logger="tanet_lightning"):
        model.setup("fit")
    assert "classifier starts afresh" in caplog.text
    base_net = {k.removeprefix("net."): v for k, v in saved["state_dict"].items() if k.startswith("net.")}
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, base_net[k]) != k.startswith("fc."), k
    _, ft = train(cfg)
    tuned = ft["trainer"].checkpoint_callback.best_model_path
    assert torch.load(tuned, weights_only=True)["class_names"] == sorted(SUBSET)

    video = str(folder / "shrink" / sorted(p.name for p in (folder / "shrink").iterdir())[0])
    pred = Predictor.from_checkpoint(tuned).predict(video, topk=3)
    assert sorted(pred.classes) == sorted(SUBSET) and abs(sum(pred.probs) - 1) < 1e-4

    # the CLI: a table, JSON lines, and an unreadable file listed without stopping the others
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "p.jsonl"
    proc = subprocess.run([sys.executable, "-m", "tanet_lightning.predict", f"ckpt_path={tuned}",
                           f"inputs=[{folder / 'grow'},{tmp_path / 'broken.mp4'}]", "topk=2", f"out={out}",
                           "progress=false"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(list((folder / "grow").iterdir())) and all(len(r["classes"]) == 2 for r in rows)
    assert "broken.mp4" in proc.stderr and "could not be read" in proc.stderr


def test_init_from_rejects_another_architecture(make_cfg, tmp_path):
    from tanet_lightning.models import CheckpointError, create_video_model

    other = create_video_model("resnet34", "tam", 8, 4)
    torch.save({"state_dict": other.state_dict()}, tmp_path / "r34.pth")
    model = instantiate(make_cfg([f"+model.init_from={tmp_path / 'r34.pth'}"]).model, num_classes=8)
    with pytest.raises(CheckpointError, match="model.backbone=resnet34"):
        model.setup("fit")


def test_freeze_bn_keeps_all_but_the_first_batchnorm_frozen(make_cfg):
    model = instantiate(make_cfg(["model.freeze_bn=true"]).model, num_classes=8)
    bns = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.train()
    assert bns[0].training and bns[0].weight.requires_grad
    assert all(not b.training and not b.weight.requires_grad for b in bns[1:])
    names = {id(p) for g in model.param_groups() for p in g["params"]}
    assert id(bns[1].weight) not in names and id(bns[0].weight) in names


def test_video_folder_split_is_seeded_and_disjoint(tmp_path, data_dir):
    from tanet_lightning.data.datamodule import VideoDataModule

    # the tiny set of conftest.TINY_SYNTHETIC (same spec: generated once per session)
    tiny_synthetic_dir(data_dir)
    folder = _video_folder(data_dir, tmp_path / "v")
    dm = VideoDataModule(tmp_path, format="video_folder", root=str(folder), num_workers=0)
    assert dm.class_names == sorted(SUBSET)
    train_r, val_r = dm._read_records("train"), dm._read_records("val")
    assert not {r.path for r in train_r} & {r.path for r in val_r}
    assert {r.label for r in val_r} == {0, 1, 2}
    again = VideoDataModule(tmp_path, format="video_folder", root=str(folder), num_workers=0)
    assert [r.path for r in again._read_records("val")] == [r.path for r in val_r]
    assert dm.test_protocol().test_views == "1x1"
