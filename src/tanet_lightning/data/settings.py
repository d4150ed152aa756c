"""How a video becomes clips: the one place the sampling and transform settings and their defaults live.

``ClipSettings`` holds the ``data.*`` keys that decide what a clip looks like (length, sampler, decoder
size, crops, augmentation, frame-folder names). The DataModule builds one from its config, and the test
protocol saved in checkpoints (protocol.py) takes its defaults and values from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, NamedTuple

from pydantic import BeforeValidator, Field

from ..base.errors import ConfigError
from ..base.typed import Count, Fix, check_arguments, model_of
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
        return views(value)
    except ValueError as e:
        raise ConfigError(f"{key}={value!r}: {e}") from None


def views(value: str | Sequence[int] | Views) -> Views:
    """``parse_views`` for a validator: what is wrong is a ValueError."""
    try:
        clips, crops = (int(v) for v in (value.lower().split("x") if isinstance(value, str) else value))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"not clips x crops: {VIEWS_FIX}") from None
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"need >= 1 clip and 1 or 3 crops: {VIEWS_FIX}")
    return Views(clips, crops)


VIEWS_FIX = "give clips x crops, e.g. 10x3, 2x3 or 1x1 (crops: 1 or 3)"


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """The ``data.*`` keys of clip sampling and transforms: their types, ranges and defaults (written only
    here; the config schema checks ``data.*`` with these fields)."""

    num_frames: Count = 8  # clip length T
    sampler: Literal["uniform", "dense"] = "uniform"  # "dense" (Kinetics 8x8) | "uniform" (TSN segments)
    dense_window: Count = 64  # dense: the span the T frames are spread over
    short_side: Count | None = 256  # decoder resize of the shorter side (None = native)
    crop_size: Count = 224  # train/val crop
    test_crop_size: Count | None = None  # None = crop_size (K400/Sth-V2 test on the full 256 short side)
    # a string such as "10x3" is parsed on construction
    test_views: Annotated[Views, BeforeValidator(views), Fix(give="10x3", why="clips x crops")] = Views(1, 1)
    scales: Annotated[Sequence[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)] = (1.0, 0.875, 0.75, 0.66)
    max_distort: Annotated[int, Field(ge=0)] = 1
    flip: bool = True
    frame_template: str = "{:05d}.jpg"  # frame folders: file name of frame i + start_index
    start_index: Annotated[int, Field(ge=0)] = 1

    def __post_init__(self):
        check_arguments(CLIP_FIELDS, dataclasses.asdict(self), "data.")
        set_ = _setter(self)
        set_("test_views", views(self.test_views))
        set_("scales", tuple(float(s) for s in self.scales))
        set_("test_crop_size", self.test_crop_size or self.crop_size)
        try:
            self.clip_sampler  # noqa: B018  (validates sampler, num_frames, dense_window together)
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


CLIP_FIELDS = model_of(ClipSettings)  # what __post_init__ checks (the config schema reads the same annotations)


def _setter(obj):
    """Assignment inside a frozen dataclass's __post_init__ (normalising the values it was given)."""
    return lambda name, value: object.__setattr__(obj, name, value)
