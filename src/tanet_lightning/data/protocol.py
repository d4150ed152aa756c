"""The test-time protocol: how a trained model reads a video.

The DataModule builds one from its ``ClipSettings`` and its test split reads every view through it;
training saves it in every checkpoint (``data_config``); ``convert`` builds it from a data config the same
way (``TestProtocol.from_data_config``); predict, export and the TAM visualiser read videos with it.
Defaults come from ``ClipSettings`` (settings.py), the normalisation from transforms.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch

from ..base.errors import ConfigError
from .decoders import FrameReader
from .index import IndexEntry
from .sampling import ClipSampler
from .settings import ClipSettings, Views, parse_views
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, normalize_on_device

_D = ClipSettings()


@dataclasses.dataclass(frozen=True)
class TestProtocol:
    num_frames: int
    sampler: str = _D.sampler
    dense_window: int = _D.dense_window
    short_side: int | None = _D.short_side
    crop_size: int = _D.crop_size  # the test crop
    test_views: str = str(_D.test_views)  # clips x crops; saved as this string, parsed once into `views`
    frame_template: str = _D.frame_template
    start_index: int = _D.start_index
    mean: tuple[float, ...] = IMAGENET_MEAN  # normalisation in 0-1 units, on the device
    std: tuple[float, ...] = IMAGENET_STD
    views: Views = dataclasses.field(init=False, repr=False, compare=False)

    __test__ = False  # not a pytest class, despite the name

    def __post_init__(self):
        views = parse_views(self.test_views, "test_views")
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "test_views", str(views))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        self.clip_sampler  # noqa: B018  (validates sampler)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def from_settings(cls, settings: ClipSettings, **overrides) -> TestProtocol:
        """The test protocol of a DataModule's settings (the test crop, the test views)."""
        given = {k: getattr(settings, k) for k in cls.fields() if hasattr(settings, k)}
        return cls(**{**given, "crop_size": settings.test_crop_size, **overrides})

    @classmethod
    def from_data_config(cls, data: Mapping, **overrides) -> TestProtocol:
        """From a ``data`` config node (conf/data/<name>.yaml) as the DataModule would build it; ``overrides``
        replace protocol fields (``num_frames``, ``mean``, ``std``)."""
        clip = {k: v for k, v in overrides.items() if k in ClipSettings.keys()}
        rest = {k: v for k, v in overrides.items() if k not in clip}
        return cls.from_settings(ClipSettings.from_config(data, **clip), **rest)

    @classmethod
    def from_dict(cls, data: Mapping) -> TestProtocol:
        """From a checkpoint's ``data_config``; keys that are not protocol fields (``dataset``) are ignored."""
        if "num_frames" not in data:
            raise ConfigError(f"a data config needs num_frames; got keys {sorted(data)}")
        return cls(**{k: v for k, v in data.items() if k in cls.fields()})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.fields()} | {"mean": list(self.mean), "std": list(self.std)}

    def replace(self, **changes) -> TestProtocol:
        return dataclasses.replace(self, **changes)

    @property
    def clip_sampler(self) -> ClipSampler:
        return ClipSampler(self.sampler, int(self.num_frames), int(self.dense_window))

    def read(self, path: str | os.PathLike, indices, frame_count: int | None = None,
             index_entry: IndexEntry | None = None, frames: FrameReader | None = None) -> torch.Tensor:
        """uint8 (n, h, w, 3) frames at `indices` (an array, or a function of the frame count);
        `frame_count` skips counting a frame folder (rawframe lists give it); `index_entry` the demux;
        `frames` the decoder and device (data.decoder, data.decode_device; default PyAV on the CPU)."""
        return (frames or FrameReader()).read(path, indices, self.short_side, frame_template=self.frame_template,
                                              start_index=int(self.start_index), num_frames=frame_count,
                                              index_entry=index_entry)

    def read_views(self, path: str | os.PathLike, frame_count: int | None = None,
                   index_entry: IndexEntry | None = None, frames: FrameReader | None = None) -> torch.Tensor:
        """uint8 (clips*crops, T, 3, S, S): every test view of one video (a file or a frame folder),
        view = clip * crops + crop."""
        clips, crops = self.views
        sampler = self.clip_sampler
        clip = self.read(path, lambda n: sampler.test(n, clips).reshape(-1), frame_count, index_entry, frames)
        t = sampler.num_frames
        return torch.stack([eval_transform(clip[i * t:(i + 1) * t], int(self.crop_size), crop, crops)
                            for i in range(clips) for crop in range(crops)])

    def normalize(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 with this protocol's mean/std, on the video's device."""
        return normalize_on_device(video, self.mean, self.std)
