"""Clip augmentation on uint8 (T, H, W, 3) clips -> uint8 (T, 3, S, S).

The clip arrives either resized to its short side (frame folders: libjpeg downscales while decoding) or
at its native size with `short_side` given: crops are then chosen as on the frame resized to that short
side and cut from the native frame, so a frame is resampled once (crop -> crop size) instead of twice
(swscale's resize of a whole frame costs 0.6-2 ms, a quarter of a Something-Something clip's loading).
Every op picks one crop/flip per clip and applies it to all frames at once (a slice + one interpolate),
so frames stay aligned. Normalisation is not here: it runs on the device after transfer (`normalize_on_device`),
so the host->device copy stays uint8 (4x less traffic than float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io import short_side_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_tchw(clip: torch.Tensor) -> torch.Tensor:
    if clip.dim() != 4 or clip.shape[-1] != 3 or clip.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 clip (T, H, W, 3), got {tuple(clip.shape)} {clip.dtype}")
    return clip.permute(0, 3, 1, 2)


def _resize(clip: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> (T, 3, size, size) uint8; bilinear with antialias, like PIL's resize."""
    if clip.shape[-2:] == (size, size):
        return clip.contiguous()
    return F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _to_native(box: tuple[int, int, int, int], virtual: tuple[int, int], native: tuple[int, int]):
    """A (y, x, h, w) box on the virtual (resized) frame -> the same region of the native frame."""
    if virtual == native:
        return box
    sy, sx = native[0] / virtual[0], native[1] / virtual[1]
    y, x, h, w = box
    h, w = min(native[0], max(1, round(h * sy))), min(native[1], max(1, round(w * sx)))
    return min(round(y * sy), native[0] - h), min(round(x * sx), native[1] - w), h, w


def multi_scale_crop_box(
    height: int,
    width: int,
    out_size: int,
    scales: Sequence[float],
    max_distort: int,
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """(y, x, h, w) of the TSN multi-scale crop: side lengths from base*scales (width and height at most
    `max_distort` scale levels apart), snapped to out_size when within 3 px, at one of 13 fixed offsets."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [out_size if abs(s - out_size) < 3 else s for s in sizes]
    pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    cw, ch = min(cw, width), min(ch, height)
    ws, hs = (width - cw) // 4, (height - ch) // 4
    # 4 corners, centre, 4 edge midpoints, 4 quarter points (in units of the quarter step)
    grid = [
        (0, 0),
        (4, 0),
        (0, 4),
        (4, 4),
        (2, 2),
        (0, 2),
        (4, 2),
        (2, 4),
        (2, 0),
        (1, 1),
        (3, 1),
        (1, 3),
        (3, 3),
    ]
    gx, gy = grid[int(rng.integers(len(grid)))]
    return gy * hs, gx * ws, ch, cw


def train_transform(
    clip: torch.Tensor,
    rng: np.random.Generator,
    crop_size: int,
    scales: Sequence[float],
    max_distort: int,
    flip: bool,
    short_side: int | None = None,
) -> tuple[torch.Tensor, bool]:
    """Multi-scale crop -> resize to crop_size -> random horizontal flip. Returns (clip, flipped).
    short_side: the crop is chosen on the frame resized to it (the clip may come at native size)."""
    x = _to_tchw(clip)
    native = (x.shape[2], x.shape[3])
    virtual = short_side_size(*native, short_side)
    box = multi_scale_crop_box(*virtual, crop_size, scales, max_distort, rng)
    y0, x0, h, w = _to_native(box, virtual, native)
    x = _resize(x[:, :, y0 : y0 + h, x0 : x0 + w], crop_size)
    flipped = bool(flip and rng.random() < 0.5)
    if flipped:
        x = x.flip(-1)
    return x.contiguous(), flipped


def crop_boxes(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int, int, int]]:
    """Test crops (y, x, h, w): 1 = centre; 3 = both ends and the centre of the long side (mm ThreeCrop)."""
    size_h, size_w = min(size, height), min(size, width)
    cy, cx = (height - size_h) // 2, (width - size_w) // 2
    if num_crops == 1:
        return [(cy, cx, size_h, size_w)]
    if num_crops == 3:
        if width >= height:
            return [(cy, 0, size_h, size_w), (cy, cx, size_h, size_w), (cy, width - size_w, size_h, size_w)]
        return [(0, cx, size_h, size_w), (cy, cx, size_h, size_w), (height - size_h, cx, size_h, size_w)]
    raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")


def eval_transform(
    clip: torch.Tensor, crop_size: int, crop: int = 0, num_crops: int = 1, short_side: int | None = None
) -> torch.Tensor:
    """Crop number `crop` of `num_crops` fixed crops; resized to crop_size if the frame was smaller.
    short_side: the crop is chosen on the frame resized to it (the clip may come at native size)."""
    x = _to_tchw(clip)
    native = (x.shape[2], x.shape[3])
    virtual = short_side_size(*native, short_side)
    y0, x0, h, w = _to_native(crop_boxes(*virtual, crop_size, num_crops)[crop], virtual, native)
    return _resize(x[:, :, y0 : y0 + h, x0 : x0 + w], crop_size)


def normalize_on_device(video: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 (x/255 - mean)/std, on whatever device `video` lives."""
    shape = (3, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=video.device).view(shape) * 255
    s = torch.tensor(std, dtype=torch.float32, device=video.device).view(shape) * 255
    return ((video.to(torch.float32) - m) / s).contiguous()
