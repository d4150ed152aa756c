"""The test-time protocol: how a trained model reads a video.

Training saves it in every checkpoint (``data_config``, from the DataModule's test split); ``convert``
writes it for a peer's weights from ``conf/data/<name>.yaml``; predict, export and the TAM visualiser
read videos with it. One dataclass holds the fields and their defaults for all of them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch

from .io import read_video_frames
from .sampling import ClipSampler
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, normalize_on_device, parse_views


@dataclasses.dataclass(frozen=True)
class TestProtocol:
    num_frames: int
    sampler: str = "uniform"  # "dense" | "uniform"
    dense_window: int = 64
    short_side: int | None = 256  # decoder resize of the shorter side (None = native)
    crop_size: int = 224  # test crop
    test_views: str = "1x1"  # clips x crops
    frame_template: str = "{:05d}.jpg"  # frame folders
    start_index: int = 1
    mean: tuple[float, ...] = IMAGENET_MEAN  # normalisation in 0-1 units, on the device
    std: tuple[float, ...] = IMAGENET_STD

    __test__ = False  # not a pytest class, despite the name

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        self.views  # noqa: B018  (validates test_views)
        self.clip_sampler  # noqa: B018  (validates sampler)

    @classmethod
    def from_dict(cls, data: Mapping) -> TestProtocol:
        """From a checkpoint's ``data_config``; keys that are not protocol fields (``dataset``) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        if "num_frames" not in data:
            raise ValueError(f"a data config needs num_frames; got keys {sorted(data)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def replace(self, **changes) -> TestProtocol:
        return dataclasses.replace(self, **changes)

    @property
    def clip_sampler(self) -> ClipSampler:
        return ClipSampler(self.sampler, int(self.num_frames), int(self.dense_window))

    @property
    def views(self) -> tuple[int, int]:
        """(clips, crops)."""
        return parse_views(self.test_views)

    def read(self, path: str | os.PathLike, indices) -> torch.Tensor:
        """uint8 (n, h, w, 3) frames at `indices` (an array, or a function of the frame count)."""
        return read_video_frames(path, indices, self.short_side, frame_template=self.frame_template,
                                 start_index=int(self.start_index))

    def read_views(self, path: str | os.PathLike) -> torch.Tensor:
        """uint8 (clips*crops, T, 3, S, S): every test view of one video (a file or a frame folder)."""
        clips, crops = self.views
        sampler = self.clip_sampler
        frames = self.read(path, lambda n: sampler.test(n, clips).reshape(-1))
        t = sampler.num_frames
        return torch.stack([eval_transform(frames[i * t:(i + 1) * t], int(self.crop_size), crop, crops)
                            for i in range(clips) for crop in range(crops)])

    def normalize(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 with this protocol's mean/std, on the video's device."""
        return normalize_on_device(video, self.mean, self.std)
