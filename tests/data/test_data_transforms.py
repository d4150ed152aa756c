"""Augmentations keep a clip aligned across frames, flip swaps direction labels, crops are the paper's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tanet_lightning.data.settings import parse_views
from tanet_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_boxes,
    eval_transform,
    multi_scale_crop_box,
    normalize_on_device,
    train_transform,
)


def _static_clip(t=8, h=60, w=80, seed=0) -> torch.Tensor:
    frame = torch.randint(
        0, 256, (1, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    return frame.expand(t, h, w, 3).contiguous()


def test_train_transform_same_crop_for_every_frame():
    clip = _static_clip()
    rng = np.random.default_rng(0)
    flips = []
    for _ in range(40):
        out, flipped = train_transform(clip, rng, 32, (1, 0.875, 0.75, 0.66), 1, flip=True)
        assert out.shape == (8, 3, 32, 32) and out.dtype == torch.uint8 and out.is_contiguous()
        assert (out == out[:1]).all(), "frames of one clip got different crops/flips"
        flips.append(flipped)
    assert 5 < sum(flips) < 35


def test_train_transform_tracks_content_per_frame():
    # frame t = frame 0 + t (no clipping): a shared crop keeps the per-frame offset exactly
    base = torch.randint(0, 200, (1, 50, 70, 3), dtype=torch.uint8)
    clip = (base + torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1)).contiguous()
    out, _ = train_transform(clip, np.random.default_rng(1), 40, (1, 0.875, 0.75, 0.66), 1, flip=True)
    diff = out.int() - out[:1].int()
    for t in range(8):
        assert (diff[t] - t).abs().max() <= 1  # bilinear rounding only


def test_flip_off_never_flips():
    rng = np.random.default_rng(0)
    assert not any(train_transform(_static_clip(), rng, 32, (1,), 1, flip=False)[1] for _ in range(30))


def test_flip_mirrors_the_crop():
    clip = _static_clip(t=2, h=32, w=32)
    rng = np.random.default_rng(3)
    for _ in range(20):
        out, flipped = train_transform(clip, rng, 32, (1.0,), 0, flip=True)
        ref = clip.permute(0, 3, 1, 2)
        assert torch.equal(out, ref.flip(-1) if flipped else ref)


def test_multi_scale_crop_box_matches_protocol():
    rng = np.random.default_rng(0)
    scales = (1, 0.875, 0.75, 0.66)
    sides = [int(256 * s) for s in scales]
    sides = [224 if abs(s - 224) < 3 else s for s in sides]
    offsets = set()
    for _ in range(2000):
        y, x, h, w = multi_scale_crop_box(256, 340, 224, scales, 1, rng)
        assert h in sides and w in sides and abs(sides.index(h) - sides.index(w)) <= 1
        assert 0 <= y and y + h <= 256 and 0 <= x and x + w <= 340
        if (h, w) == (256, 256):
            offsets.add((y, x))
    assert len(offsets) == 5  # h == full height: the 13 positions collapse to 5 along x
    assert len({multi_scale_crop_box(256, 340, 224, scales, 1, rng)[:2] for _ in range(3000)}) > 13


def test_eval_crops():
    assert crop_boxes(256, 340, 224, 1) == [(16, 58, 224, 224)]
    assert crop_boxes(256, 340, 256, 3) == [(0, 0, 256, 256), (0, 42, 256, 256), (0, 84, 256, 256)]
    assert crop_boxes(340, 256, 256, 3) == [(0, 0, 256, 256), (42, 0, 256, 256), (84, 0, 256, 256)]
    clip = _static_clip(t=4, h=40, w=60)
    for crop in range(3):
        out = eval_transform(clip, 32, crop, 3)
        assert out.shape == (4, 3, 32, 32) and (out == out[:1]).all()
        y, x, h, w = crop_boxes(40, 60, 32, 3)[crop]
        assert torch.equal(out, clip.permute(0, 3, 1, 2)[:, :, y : y + h, x : x + w])


def test_normalize_on_device_matches_formula():
    v = torch.randint(0, 256, (2, 8, 3, 4, 4), dtype=torch.uint8)
    out = normalize_on_device(v)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out, (v.float() / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    assert out.dtype == torch.float32 and out.is_contiguous()


def test_parse_views():
    assert parse_views("10x3") == (10, 3) and parse_views("2X3") == (2, 3) and parse_views([4, 1]) == (4, 1)
    for bad in ("10", "10x2", "0x3", "axb"):
        with pytest.raises(ValueError, match="clips|crops"):
            parse_views(bad)


def test_rejects_non_uint8_clips():
    with pytest.raises(ValueError, match="uint8"):
        eval_transform(torch.zeros(8, 32, 32, 3), 32)


@pytest.mark.parametrize("native", [(60, 107), (90, 160), (64, 85), (107, 60)])  # SSv2, 360p, K400, portrait
def test_crops_cut_from_the_native_frame_match_resize_then_crop(native):
    # short_side given: the crop is chosen on the frame resized to it and cut from the native frame (one
    # resampling instead of two); the picture is the one a resize to the short side and a crop would give
    h, w = native
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frame = torch.stack([255 * yy, 255 * xx, 127 + 100 * torch.sin(6 * xx + 4 * yy)], -1)  # smooth: resampling-safe
    clip = frame.round().to(torch.uint8)[None].expand(2, h, w, 3).contiguous()
    vh, vw = (64, round(w * 64 / h)) if h <= w else (round(h * 64 / w), 64)
    resized = torch.nn.functional.interpolate(clip.permute(0, 3, 1, 2).float(), size=(vh, vw), mode="bilinear",
                                              antialias=True).round().clamp(0, 255).to(torch.uint8)
    resized = resized.permute(0, 2, 3, 1).contiguous()
    for seed in range(6):
        a, fa = train_transform(clip, np.random.default_rng(seed), 56, (1, 0.875, 0.75, 0.66), 1, True, 64)
        b, fb = train_transform(resized, np.random.default_rng(seed), 56, (1, 0.875, 0.75, 0.66), 1, True)
        assert fa == fb and a.shape == b.shape == (2, 3, 56, 56)
        assert (a.float() - b.float()).abs().mean() < 2.5, seed
    a, b = eval_transform(clip, 56, short_side=64), eval_transform(resized, 56)
    assert a.shape == b.shape and (a.float() - b.float()).abs().mean() < 2.5
