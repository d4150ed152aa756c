"""Frame-index samplers of the paper's two protocols (0-based indices; frame folders add start_index).

* dense (Kinetics, TANet): T frames at stride window//T inside a `window`-frame span (64 -> 8x8 for
  T=8, 16x4 for T=16). Train: random start; val: the middle start; test: N starts evenly spaced.
  Videos shorter than the span wrap around (index mod F), as the reference code does.
* uniform (TSN segments, Something-Something): F split into T equal segments. Train: a random frame
  per segment; val/test: segment centres; N test clips shift the offset inside each segment
  (N=2 gives the centre and the segment start, mm's "twice_sample").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def dense_train(num_frames: int, clip_len: int, window: int, rng: np.random.Generator) -> np.ndarray:
    stride = max(1, window // clip_len)
    sample_pos = max(1, 1 + num_frames - window)
    start = int(rng.integers(0, sample_pos - 1)) if sample_pos > 1 else 0
    return (start + stride * np.arange(clip_len)) % num_frames


def dense_test(num_frames: int, clip_len: int, window: int, num_clips: int) -> np.ndarray:
    """(num_clips, clip_len) indices; starts = int(linspace(0, sample_pos - 1, num_clips))."""
    stride = max(1, window // clip_len)
    sample_pos = max(1, 1 + num_frames - window)
    starts = np.linspace(0, sample_pos - 1, num_clips).astype(np.int64)
    return (starts[:, None] + stride * np.arange(clip_len)[None, :]) % num_frames


def dense_val(num_frames: int, clip_len: int, window: int) -> np.ndarray:
    stride = max(1, window // clip_len)
    start = max(1, 1 + num_frames - window) // 2
    return (start + stride * np.arange(clip_len)) % num_frames


def uniform_train(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    seg = num_frames // clip_len
    if seg > 0:
        return seg * np.arange(clip_len) + rng.integers(0, seg, clip_len)
    # fewer frames than segments: keep temporal order and repeat frames (the reference code uses zeros)
    return np.arange(clip_len) * num_frames // clip_len


def uniform_test(num_frames: int, clip_len: int, num_clips: int = 1) -> np.ndarray:
    """(num_clips, clip_len) indices; clip 0 takes segment centres int(tick/2 + tick*i)."""
    tick = num_frames / clip_len
    offsets = (tick / 2 + tick * np.arange(num_clips) / num_clips) % tick
    idx = (offsets[:, None] + tick * np.arange(clip_len)[None, :]).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


@dataclass(frozen=True)
class ClipSampler:
    """One sampling protocol, chosen in the data config: `sampler: dense|uniform`."""

    kind: str  # "dense" or "uniform"
    num_frames: int  # T, frames per clip
    window: int = 64  # dense only: the span the T frames are spread over

    def __post_init__(self):
        if self.kind not in ("dense", "uniform"):
            raise ValueError(f"sampler must be 'dense' or 'uniform', got {self.kind!r}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.kind == "dense" and self.window < self.num_frames:
            raise ValueError(f"dense window ({self.window}) must be >= num_frames ({self.num_frames})")

    def train(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "dense":
            return dense_train(num_frames, self.num_frames, self.window, rng)
        return uniform_train(num_frames, self.num_frames, rng)

    def val(self, num_frames: int) -> np.ndarray:
        if self.kind == "dense":
            return dense_val(num_frames, self.num_frames, self.window)
        return uniform_test(num_frames, self.num_frames, 1)[0]

    def test(self, num_frames: int, num_clips: int) -> np.ndarray:
        if self.kind == "dense":
            return dense_test(num_frames, self.num_frames, self.window, num_clips)
        return uniform_test(num_frames, self.num_frames, num_clips)
