"""How a video becomes clips: the one place the sampling and transform settings and their defaults live.

``ClipSettings`` holds the ``data.*`` keys that decide what a clip looks like (length, sampler, decoder
size, crops, augmentation, frame-folder names). The DataModule builds one from its config, and the test
protocol saved in checkpoints (protocol.py) takes its defaults and values from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ..base.errors import ConfigError
from .sampling import ClipSampler


class Views(NamedTuple):
    """Test views per video: temporal clips x spatial crops (``"10x3"``)."""

    clips: int
    crops: int

    def __str__(self) -> str:
        return f"{self.clips}x{self.crops}"


def parse_views(value: str | Sequence[int], key: str = "data.test_views") -> Views:
    """'10x3' (or (10, 3)) -> Views(10, 3): the only place a views string is read."""
    try:
        clips, crops = (int(v) for v in (value.lower().split("x") if isinstance(value, str) else value))
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"{key} must look like '10x3' (clips x crops), got {value!r}") from None
    if clips < 1 or crops not in (1, 3):
        raise ConfigError(f"{key}={value!r}: need >= 1 clip and 1 or 3 crops (e.g. 1x1, 2x3, 10x3)")
    return Views(clips, crops)


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """The ``data.*`` keys of clip sampling and transforms, with their defaults (written only here)."""

    num_frames: int = 8  # clip length T
    sampler: str = "uniform"  # "dense" (Kinetics 8x8) | "uniform" (TSN segments)
    dense_window: int = 64  # dense: the span the T frames are spread over
    short_side: int | None = 256  # decoder resize of the shorter side (None = native)
    crop_size: int = 224  # train/val crop
    test_crop_size: int | None = None  # None = crop_size (K400/Sth-V2 test on the full 256 short side)
    test_views: Views = Views(1, 1)  # a string such as "10x3" is parsed on construction
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # multi-scale crop (TSN)
    max_distort: int = 1
    flip: bool = True
    frame_template: str = "{:05d}.jpg"  # frame folders: file name of frame i + start_index
    start_index: int = 1

    def __post_init__(self):
        set_ = _setter(self)
        set_("test_views", parse_views(self.test_views))
        set_("scales", tuple(float(s) for s in self.scales))
        set_("test_crop_size", self.test_crop_size or self.crop_size)
        for key in ("num_frames", "crop_size", "test_crop_size", "dense_window"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be a positive integer, got {getattr(self, key)!r}")
        if self.short_side is not None and (not isinstance(self.short_side, int) or self.short_side < 1):
            raise ConfigError(f"data.short_side must be a positive integer or null, got {self.short_side!r}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ConfigError(f"data.scales must be fractions in (0, 1], got {list(self.scales)}")
        try:
            self.clip_sampler  # noqa: B018  (validates sampler, num_frames, dense_window)
        except ValueError as e:
            raise ConfigError(f"data.sampler / data.num_frames / data.dense_window: {e}") from None

    @classmethod
    def from_config(cls, data: Mapping, **overrides) -> ClipSettings:
        """From a ``data`` config node (or any mapping): its clip keys, other keys ignored."""
        # null means "the default", except for short_side, where it means "native size"
        given = {k: data[k] for k in cls.keys() if k in data and (data[k] is not None or k == "short_side")}
        return cls(**{**given, **overrides})

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @property
    def clip_sampler(self) -> ClipSampler:
        return ClipSampler(self.sampler, int(self.num_frames), int(self.dense_window))


def _setter(obj):
    """Assignment inside a frozen dataclass's __post_init__ (normalising the values it was given)."""
    return lambda name, value: object.__setattr__(obj, name, value)
