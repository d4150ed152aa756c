"""A checkpoint saved by version 0.1 (before the one-model-path change: flat hyper-parameters, the
network's arguments beside the module's) still evaluates, predicts and resumes with the numbers 0.1
gave. tests/fixtures/make_ckpt_v0_1.py says how the fixture and its expected numbers were made."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tanet_lightning.eval import evaluate
from tanet_lightning.models.load import Checkpoint, load_model
from tanet_lightning.predict import Predictor
from tanet_lightning.train import train
from tinyconf import tiny_synthetic_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CKPT = FIXTURES / "ckpt_v0_1.ckpt"
EXPECTED = json.loads((FIXTURES / "ckpt_v0_1.json").read_text())
# the fixture's model: its yaml keys as 0.1 took them (the tiny synthetic set comes from make_cfg)
MODEL = ["model=tanet_small", "data.num_frames=2", "+model.backbone_kwargs.channels=[4,8,16,32]",
         "+model.backbone_kwargs.stem_width=8", "trainer.max_epochs=1", "optimizer=sgd"]


def test_the_fixture_is_a_v0_1_checkpoint():
    """Guard against regenerating it with the new code: flat hyper-parameters with every network key."""
    raw = torch.load(CKPT, map_location="cpu", weights_only=True)
    hp = raw["hyper_parameters"]
    assert {"backbone", "temporal", "tam", "position", "stages", "dropout", "pretrained", "pretrained_path",
            "backbone_kwargs", "num_frames", "num_classes", "fc_lr_mult", "view_average"} <= set(hp)
    assert raw["optimizer_states"] and raw["class_names"] and raw["data_config"]["num_frames"] == 2
    assert CKPT.stat().st_size < 2_000_000


def test_evaluates_with_the_same_metrics_and_scores(make_cfg, tmp_path):
    metrics, objs = evaluate(make_cfg([f"ckpt_path={CKPT}", "data.num_frames=2"], name="eval"))
    assert {k: metrics[k] for k in EXPECTED["eval"]} == pytest.approx(EXPECTED["eval"], abs=1e-6)
    scores = np.load(objs["model"].scores_path)
    # generator version 5 turns the rotating bar about its tail: the rotate_cw/ccw videos differ from 0.1's,
    # every other class's videos are the same (the same random draws), so their scores must be 0.1's
    same = ~np.isin(scores["labels"], [4, 5])
    assert same.sum() >= 6
    np.testing.assert_allclose(scores["scores"][same], np.asarray(EXPECTED["eval_scores"])[same], rtol=0, atol=1e-6)

    # the same videos as class folders: sorted folder names are another class order. Each video keeps its
    # scores, columns in the data's order (0.1 scored the checkpoint's rows as the data's classes)
    root = tmp_path / "folders"
    names = Checkpoint.read(CKPT).class_names
    for video in map(Path, scores["video_names"]):
        for split in ("train", "test"):
            (root / split / video.stem.rsplit("_", 1)[0]).mkdir(parents=True, exist_ok=True)
            shutil.copy(video, root / split / video.stem.rsplit("_", 1)[0] / video.name)
    _, folder = evaluate(make_cfg([f"ckpt_path={CKPT}", "data=video_folder", f"data.root={root}",
                                   "data.num_frames=2", "data.short_side=32", "data.crop_size=32",
                                   "data.test_crop_size=32", "data.num_workers=0", "trainer.accelerator=cpu"],
                                  name="eval", tiny=False))
    assert folder["datamodule"].class_names == sorted(names) != names
    moved = np.load(folder["model"].scores_path)
    by_name = {Path(n).name: s for n, s in zip(scores["video_names"], scores["scores"])}
    columns = [names.index(n) for n in sorted(names)]
    for name, row in zip(moved["video_names"], moved["scores"]):
        np.testing.assert_allclose(row, by_name[Path(name).name][columns], rtol=0, atol=1e-6)


def test_predicts_the_same_probabilities(make_cfg, data_dir):
    # the tiny synthetic set (0.1 kept it in data/synthetic/, now in its variant's folder)
    video = tiny_synthetic_dir(data_dir) / Path(EXPECTED["predict_video"]).relative_to("synthetic")
    predictor = Predictor.from_checkpoint(CKPT)
    probs = predictor.scores(predictor.clip_views(video))
    np.testing.assert_allclose(probs.numpy(), np.asarray(EXPECTED["predict_probs"]), rtol=0, atol=1e-6)
    # the one checkpoint -> model function gives the same network
    net, x = load_model(CKPT), predictor.protocol.normalize(predictor.clip_views(video))
    with torch.no_grad():
        torch.testing.assert_close(net(x), predictor.model(x))


@pytest.mark.slow  # one more epoch of training and a test: ~25 s on 2 shared cores
def test_resumes_with_the_same_metrics(make_cfg):
    metrics, _ = train(make_cfg([*MODEL, f"ckpt_path={CKPT}", "trainer.max_epochs=2", "tags=[resume]"]))
    # the val split's rotate_cw/ccw videos changed with generator version 5 (see above): val/loss moves by ~1e-5
    loose = {"val/loss"}
    assert {k: metrics[k] for k in EXPECTED["resume"] if k not in loose} == pytest.approx(
        {k: v for k, v in EXPECTED["resume"].items() if k not in loose}, rel=1e-5, abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(EXPECTED["resume"]["val/loss"], rel=1e-4)


@pytest.mark.heavy
def test_converting_a_project_checkpoint_needs_no_training_code(tmp_path):
    """models.convert reads a project checkpoint's model config itself: no import of training/ (the
    circle models/convert.py <-> training/module.py is gone)."""
    code = (f"import sys; from tanet_lightning.models.convert import convert; c = convert({str(CKPT)!r}); "
            "assert c.model_kwargs['tam'] == {'alpha': 2, 'beta': 4, 'kernel_size': 3}, c.model_kwargs; "
            "assert not [m for m in sys.modules if m.startswith('tanet_lightning.training')]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Checkpoint.read(CKPT).net_kwargs["backbone_kwargs"] == {"channels": [4, 8, 16, 32], "stem_width": 8}
