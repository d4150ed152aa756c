"""Hub-ready checkpoints: save_pretrained / from_pretrained give the same network; export format=hf writes a
folder whose model card names every field with its value; predict, eval and model.init_from take the folder."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from peers import randomize

from tanet_lightning.base.errors import CheckpointError
from tanet_lightning.convert import main as convert_main
from tanet_lightning.eval import evaluate
from tanet_lightning.export import export
from tanet_lightning.models import create_video_model
from tanet_lightning.models.card import card_fields
from tanet_lightning.models.convert import load_init_weights
from tanet_lightning.models.hub import resolve_pretrained
from tanet_lightning.models.load import Checkpoint
from tanet_lightning.models.video import VideoClassifier
from tanet_lightning.predict import Predictor, predict
from tinyconf import TINY_SYNTHETIC, tiny_synthetic_dir

FINGERPRINT = {"test": {"annotated": 8, "found": 8, "unreadable": 0, "videos_sha256": "9f2c4e0a1b7d3c5e" * 4,
                        "classes_sha256": "1" * 64, "flip_map_sha256": "2" * 64, "num_classes": 2}}


def _clips(t: int = 4, n: int = 2) -> torch.Tensor:
    return torch.randn(n, t, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _assert_same_logits(a: torch.nn.Module, b: torch.nn.Module) -> None:
    with torch.no_grad():
        x = _clips(a.num_frames)
        want, got = a.eval()(x), b.eval()(x)
    assert want.abs().max() > 1e-3
    assert (got - want).abs().max().item() <= 1e-6


def test_save_pretrained_from_pretrained_same_logits(tmp_path):
    net = randomize(create_video_model("resnet18", "tam", num_classes=5, num_frames=4,
                                       tam={"alpha": 2, "beta": 2, "kernel_size": 5}, stages=["res4", "res5"]))
    folder = net.save_pretrained(tmp_path / "hf", class_names=list("abcde"))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    back = VideoClassifier.from_pretrained(folder)
    _assert_same_logits(net, back)
    _assert_same_logits(net, Checkpoint.read(folder).build())  # the one reader of checkpoints takes the folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["tam"] == {"alpha": 2, "beta": 2, "kernel_size": 5}
    assert config["class_names"] == list("abcde")
    fields = card_fields(config)
    assert fields["beta"] == "2" and fields["K (temporal kernel size)"] == "5" and fields["stages"] == "res4, res5"
    assert fields["top-1"] == "not recorded" and "More information needed" not in (folder / "README.md").read_text()


def test_folders_that_are_not_hub_checkpoints_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without config.json and model.safetensors"):
        Checkpoint.read(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such folder, and not a Hub repo id"):
        resolve_pretrained(tmp_path / "a" / "b" / "c")
    torch.save({}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="is a file: from_pretrained takes a save_pretrained folder"):
        VideoClassifier.from_pretrained(tmp_path / "x.ckpt")


@pytest.fixture
def trained_run(tmp_path, data_dir):
    """A checkpoint where training leaves one (<run>/checkpoints/last.ckpt, beside .hydra/, metrics.json,
    config_resolved.yaml), written the way a user makes one from a state dict (convert --data synthetic),
    with the data fingerprint the data layer records."""
    run = tmp_path / "logs" / "train" / "runs" / "default__seed-0"
    (run / "checkpoints").mkdir(parents=True)
    net = randomize(create_video_model("resnet18", "tam", 8, 4))
    torch.save(net.state_dict(), tmp_path / "net.pth")
    ckpt = run / "checkpoints" / "last.ckpt"
    convert_main([str(tmp_path / "net.pth"), "--out", str(ckpt), "--data", "synthetic"])
    raw = torch.load(ckpt, weights_only=True)
    raw["data_fingerprint"] = FINGERPRINT
    raw["callbacks"] = {"ModelCheckpoint{'monitor': 'val/top1'}": {"best_model_path": str(run / "checkpoints" /
                                                                                          "epoch_003.ckpt")}}
    torch.save(raw, ckpt)
    (run / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(["model.tam.alpha=2", "trainer.max_epochs=8"]), run / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": {"data": "synthetic"}}}}),
                   run / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create({"data": {"test_views": "1x1"}}), run / "config_resolved.yaml")
    (run / "metrics.json").write_text(json.dumps({"test/top1": 0.875, "test/top5": 1.0, "test/num_videos": 80.0}))
    return ckpt, net


def test_export_hf_round_trip_card_predict_init_from(make_cfg, trained_run, data_dir, tmp_path):
    ckpt, net = trained_run
    out = tmp_path / "tanet_hf"
    folder, diff = export(make_cfg([f"ckpt_path={ckpt}", "format=hf", f"out={out}"], name="export", tiny=False))
    assert folder == out and diff == 0.0

    # the same logits through from_pretrained (model and Predictor)
    _assert_same_logits(net, VideoClassifier.from_pretrained(out))
    predictor = Predictor.from_pretrained(out)
    _assert_same_logits(net, predictor.model)
    assert predictor.data_config == Predictor.from_checkpoint(ckpt).data_config

    # the model card names every field with its value
    config = json.loads((out / "config.json").read_text())
    card = (out / "README.md").read_text()
    fields = card_fields(config)
    expected = {
        "dataset": "synthetic", "T (frames per clip)": "4", "alpha": "2", "beta": "4", "K (temporal kernel size)": "3",
        "position": "b", "stages": "res2, res3, res4, res5", "top-1": "87.50 %", "top-5": "100.00 %",
        "training command": "`python -m tanet_lightning.train model.tam.alpha=2 trainer.max_epochs=8`",
        "project version": "tanet-lightning 0.1.0",
    }
    for field, value in expected.items():
        assert fields[field] == value, (field, fields[field])
    assert "1x1 (clips x crops)" in fields["views"] and "uniform (TSN segments) sampling of 4 frames" in \
        fields["test protocol"] and "crop 32" in fields["test protocol"]
    assert f"{config['complexity']['params']:,}" in fields["parameters"] and fields["GFLOPs"].startswith(
        f"{config['complexity']['gflops_per_view']:.2f} per view")
    assert "videos_sha256 9f2c4e0a1b7d3c5e…" in fields["split fingerprint"] and "found 8" in fields["split fingerprint"]
    assert "epoch_003.ckpt of the same run (exported: last.ckpt)" in fields["source"]
    for field, value in fields.items():
        assert f"| {field} | {value.replace('|', '/')} |" in card
    assert "not recorded" not in card and "More information needed" not in card

    # predict takes the folder
    video = str(tiny_synthetic_dir(data_dir) / "videos" / "test" / "rotate_cw_0000.mp4")
    preds = predict(make_cfg([f"ckpt_path={out}", f"inputs=[{video}]", "progress=false"], name="predict", tiny=False))
    assert preds[0].classes[0] == Predictor.from_checkpoint(ckpt).predict(video).classes[0]

    # model.init_from takes it: every weight, or all but the classifier for another class set
    fresh = create_video_model("resnet18", "tam", 8, 4)
    assert load_init_weights(fresh, out) == []
    _assert_same_logits(net, fresh)
    other = create_video_model("resnet18", "tam", 3, 4)
    assert load_init_weights(other, out, class_names=["a", "b", "c"]) == ["fc.weight", "fc.bias"]


@pytest.mark.slow  # two evaluations, 2.4-4 s on 2 cores: kept out of make test's budget
def test_eval_of_the_folder_equals_eval_of_the_checkpoint(make_cfg, trained_run, tmp_path):
    ckpt, _ = trained_run
    out = tmp_path / "tanet_hf"
    export(make_cfg([f"ckpt_path={ckpt}", "format=hf", f"out={out}", "check=false"], name="export", tiny=False))
    args = [*TINY_SYNTHETIC, "trainer.enable_progress_bar=false"]
    from_folder, _ = evaluate(make_cfg([*args, f"ckpt_path={out}"], name="eval", tiny=False))
    from_file, _ = evaluate(make_cfg([*args, f"ckpt_path={ckpt}"], name="eval", tiny=False))
    assert from_folder["test/num_videos"] == 8
    for key in ("test/top1", "test/top5"):
        assert from_folder[key] == from_file[key]
