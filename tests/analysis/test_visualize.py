"""The visualiser end to end: tiny checkpoints trained for real, real mp4s, PNGs on disk."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import av
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import launcher as launched
from tanet_lightning.analysis.visualize import expand_videos, find_block, i3d_kernels, load_clip, record
from tanet_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tanet_lightning.models.load import Checkpoint, load_model
from tanet_lightning.training.module import VideoClassificationModule
from tanet_lightning.visualize import visualize
from tinyconf import compose_config

T, SIZE = 4, 32


def train_tiny(path: Path, steps: int, **model_kwargs) -> Path:
    """`steps` real optimiser steps on random clips, saved like a training run saves its checkpoint."""
    torch.manual_seed(0)
    model = VideoClassificationModule(num_classes=3, num_frames=T, pretrained=False,
                                      optimizer=functools.partial(torch.optim.SGD, lr=0.01), **model_kwargs)
    batches = [{"video": torch.randn(T, 3, SIZE, SIZE), "label": i % 3} for i in range(2 * max(steps, 1))]
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(batches, batch_size=2))
    trainer.save_checkpoint(path)
    return path


def write_video(path: Path, shift: int, frames: int = 12, size: int = 48) -> Path:
    """A bright square moving `shift` px per frame: H.264 yuv420p, like the real datasets."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            img = np.full((size, size, 3), 30, np.uint8)
            x = (4 + shift * t) % (size - 12)
            img[16:28, x : x + 12] = (230, 200, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("visualize")
    return {
        "tam": train_tiny(root / "tam.ckpt", 2, backbone="resnet18", temporal={"name": "tam"},
                          tam={"alpha": 2, "beta": 4, "kernel_size": 3}),
        # I3D inflates bottlenecks only, so ResNet-50 (res4 has 6 blocks: stage4_2b exists in both).
        # Zero steps: a real Lightning checkpoint of the inflated weights; a ResNet-50 step costs ~7 s here
        "i3d": train_tiny(root / "i3d.ckpt", 0, backbone="resnet50", temporal={"name": "i3d"}),
        "videos": [write_video(root / "slow.mp4", 1), write_video(root / "fast.mp4", 5)],
    }


def compose_visualize(overrides: list[str]):
    return compose_config("visualize", overrides)  # as a launch composes it (paths.output_dir set)


def test_visualize_writes_pngs_from_a_trained_checkpoint(assets, tmp_path):
    videos = ",".join(str(v) for v in assets["videos"])
    cfg = compose_visualize([f"ckpt_path={assets['tam']}", f"videos=[{videos}]", "block=stage4_2b",
                             f"size={SIZE}", f"i3d_ckpt_path={assets['i3d']}", f"out_dir={tmp_path / 'out'}"])
    result = visualize(cfg)

    pngs = [p for p in result["paths"] if p.suffix == ".png"]
    assert len(pngs) == 1 + len(assets["videos"])  # the violins + one histogram figure per video
    for p in result["paths"]:
        assert p.is_file() and p.stat().st_size > 1000, p
    assert result["block"] == "layer3.1"

    v, theta = result["v"], result["theta"]
    assert v.shape == (2, 256, T)  # resnet18 res4 conv1: 256 channels; one value per frame
    assert theta.shape == (2, 256, 3)
    assert ((v > 0) & (v < 1)).all()
    np.testing.assert_allclose(theta.sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(theta[0], theta[1])  # the kernel adapts to the video

    i3d = result["i3d"]
    assert i3d.shape == (256 * 1024, 3)  # resnet50 layer3 conv1: 1024 -> 256, three taps
    np.testing.assert_allclose(np.abs(i3d).sum(-1), 1.0, atol=1e-5)  # l1-normalised per kernel
    saved = np.load(result["paths"][-1])
    np.testing.assert_array_equal(saved["theta"], theta)


def test_record_matches_the_module_and_leaves_no_hooks(assets):
    model = load_model(assets["tam"])
    clips = torch.stack([load_clip(str(v), T, SIZE) for v in assets["videos"]])
    rec = record(model, clips, "stage4_2b")
    tam = model.backbone.layer3[1].temporal
    assert not tam.L._forward_hooks and not tam.G._forward_hooks
    # the hooked outputs are exactly what the module computes from that block's descriptor
    with torch.inference_mode():
        logits = model.eval()(clips)
    np.testing.assert_allclose(rec["logits"], logits.numpy(), rtol=1e-4, atol=1e-5)
    assert rec["v"].shape == (2, 256, T) and rec["theta"].shape == (2, 256, 3)


def test_bad_block_names_list_the_valid_ones(assets):
    model = load_model(assets["tam"])
    for bad, reason in [("stage4_3b", "has 2 blocks"), ("stage4-2b", "expected"), ("stage6_1b", "expected")]:
        with pytest.raises(ValueError, match=reason) as err:
            find_block(model, bad)
        assert "stage4_2b" in str(err.value) and "stage2_1b" in str(err.value)
    i3d = load_model(assets["i3d"])
    with pytest.raises(ValueError, match="holds no temporal adaptive module.*none: this model has no block"):
        find_block(i3d, "stage4_2b")
    with pytest.raises(ValueError, match="holds no I3D 3x1x1 conv"):
        i3d_kernels(model, "stage4_2b")


@pytest.mark.heavy
def test_cli_writes_into_the_hydra_run_dir(assets, tmp_path, launcher):
    run_dir = tmp_path / "run"
    videos = ",".join(str(v) for v in assets["videos"])
    cmd = [sys.executable, "-m", "tanet_lightning.visualize", f"ckpt_path={assets['tam']}",
           f"videos=[{videos}]", "block=stage3_1b", f"size={SIZE}", f"hydra.run.dir={run_dir}"]
    proc = launched.run(launcher, cmd, timeout=120)  # a `python -m` process, forked from the preloaded launcher
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "violins_stage3_1b.png").stat().st_size > 1000
    assert len(list(run_dir.glob("theta_hist_stage3_1b_*.png"))) == 2


@pytest.mark.heavy
def test_cli_refuses_a_bad_block_and_a_bare_weights_file_with_one_message(assets, tmp_path, launcher):
    """The application fails the one way every entry point does: the message, exit 2, no traceback."""
    torch.save({"fc.weight": torch.zeros(3, 4)}, tmp_path / "bare.pth")
    for arg, message in [("block=stage4_9b", "stage 4 has 2 blocks"),
                         (f"ckpt_path={tmp_path / 'bare.pth'}", "not a checkpoint of this project")]:
        cmd = [sys.executable, "-m", "tanet_lightning.visualize", f"ckpt_path={assets['tam']}",
               f"videos=[{assets['videos'][0]}]", "block=stage3_1b", arg, f"hydra.run.dir={tmp_path / 'run'}"]
        proc = launched.run(launcher, cmd, timeout=120)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert message in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_videos_accept_directories_and_video_lists(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("b.mp4", "a.webm", "notes.md"):
        (tmp_path / "clips" / name).write_bytes(b"")
    (tmp_path / "val.txt").write_text("clips/a.webm 3\nclips/b.mp4 0\n")
    assert expand_videos([str(tmp_path / "clips")]) == [str(tmp_path / "clips" / n) for n in ("a.webm", "b.mp4")]
    assert expand_videos(str(tmp_path / "val.txt")) == [str(tmp_path / "clips" / n) for n in ("a.webm", "b.mp4")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds neither videos"):
        expand_videos([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="does not exist"):
        expand_videos([str(tmp_path / "missing.mp4")])
    with pytest.raises(ValueError, match="videos is empty"):
        expand_videos([])


def write_ramp(path: Path, frames: int = 12, size: int = 48) -> Path:
    """A grey video whose frame t has level 10 + 20 t: a clip's brightness tells which frames it took."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            img = np.full((size, size, 3), 10 + 20 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frames_of(clip: torch.Tensor) -> list[int]:
    """Which frames of a `write_ramp` video a normalised clip holds, from each frame's grey level."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    levels = (clip * std + mean).mean((1, 2, 3)) * 255
    return ((levels - 10) / 20).round().long().tolist()


def test_dense_sampled_checkpoint_is_shown_dense_clips_at_its_own_size(make_cfg, tmp_path):
    """A checkpoint trained with dense sampling (window 8, T=4) and a 24 px test crop: visualize reads
    the middle 8-frame window at stride 2 and crops 24 px, as that model was tested, with no size given."""
    from tanet_lightning.train import train

    _, objects = train(make_cfg(["data.sampler=dense", "data.dense_window=8", "data.test_crop_size=24",
                                 "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    data = Checkpoint.read(ckpt).data_config
    assert (data["sampler"], data["dense_window"], data["crop_size"]) == ("dense", 8, 24)
    video = str(write_ramp(tmp_path / "ramp.mp4"))
    clip = load_clip(video, 4, data=data)
    assert clip.shape == (4, 3, 24, 24)
    assert frames_of(clip) == [2, 4, 6, 8]  # dense: start (1 + 12 - 8) // 2 = 2, stride 8 // 4
    assert frames_of(load_clip(video, 4, 32)) == [1, 4, 7, 10]  # no data config: TSN segment centres

    cfg = compose_visualize([f"ckpt_path={ckpt}", f"videos=[{video}]", "block=stage4_2b",
                             f"out_dir={tmp_path / 'out'}"])
    result = visualize(cfg)
    model = VideoClassificationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    assert model.net.num_frames == 4
    with torch.inference_mode():
        logits = model(clip[None])
    np.testing.assert_allclose(result["logits"], logits.numpy(), rtol=1e-4, atol=1e-5)
