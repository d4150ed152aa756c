"""The map-style clip dataset of one split, and the accounting of unreadable videos.

The dataset keeps only paths and labels (no open containers: see io.py), is map-style so Lightning can
shard it with a DistributedSampler, and turns the test split into clips x crops items carrying
(video_idx, view_idx) so predictions can be averaged per video after an all-gather. The test split's
views are the ``TestProtocol``'s (protocol.py): the object checkpoints save is the one that reads them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..base.errors import DataError
from .decoders import FrameReader
from .formats import VideoRecord
from .index import VideoIndex
from .io import VideoDecodeError
from .protocol import TestProtocol
from .settings import ClipSettings
from .transforms import eval_transform, train_transform

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# bad-file accounting shared by DataLoader workers (separate processes): one append-only log file;
# single short writes with O_APPEND do not interleave, so no lock is needed.


class TooManyBadFilesError(DataError, RuntimeError):
    """More unreadable videos than data.max_bad_fraction allows."""


class BadFileLog:
    def __init__(self, path: str | Path, max_fraction: float, total: int):
        self.path, self.max_fraction, self.total = str(path), max_fraction, total
        self._seen: set[str] = set()  # per worker: skip known-bad files without re-decoding

    def paths(self) -> list[str]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return sorted({ln.split("\t", 1)[0] for ln in f if ln.strip()})

    def known(self, path: str) -> bool:
        return path in self._seen

    def add(self, path: str, reason: str) -> None:
        self._seen.add(path)
        already = self.paths()
        if path not in already:
            log.warning("skipping unreadable video %s: %s", path, reason)
            with open(self.path, "a") as f:
                f.write(f"{path}\t{reason.replace(chr(10), ' ')[:300]}\n")
            already.append(path)
        if len(already) > self.max_fraction * self.total:
            shown = "\n  ".join(already)  # every one found so far: the user fixes them all at once
            raise TooManyBadFilesError(
                f"{len(already)} of {self.total} videos are missing or unreadable, more than "
                f"data.max_bad_fraction={self.max_fraction}. Fix or remove them from the annotation file "
                f"(full list with reasons in {self.path}):\n  {shown}"
            )


# ----------------------------------------------------------------------------------------------------



class VideoClipDataset(Dataset):
    """Map-style clip dataset. Items: {video uint8 (T,3,S,S), label, video_idx, view_idx, valid}.

    mode "train": one random clip + multi-scale crop + flip per item; "val": one centre clip, centre
    crop; "test": len = videos x views, item i = (video i // views, view i % views), read by `protocol`.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        mode: str,
        bad_files: BadFileLog,
        settings: ClipSettings,
        protocol: TestProtocol | None = None,
        flip_label_map: dict[int, int] | None = None,
        max_retries: int = 10,
        index: VideoIndex | None = None,
        frames: FrameReader | None = None,
        store=None,
    ):
        if mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be train/val/test, got {mode!r}")
        if not records:
            raise DataError(f"the {mode} split has no videos")
        self.records, self.mode, self.bad_files, self.settings = list(records), mode, bad_files, settings
        self.sampler = settings.clip_sampler
        self.protocol = protocol or TestProtocol.from_settings(settings)
        self.flip_label_map = {**(flip_label_map or {}), **{v: k for k, v in (flip_label_map or {}).items()}}
        self.views = self.protocol.views.clips * self.protocol.views.crops if mode == "test" else 1
        self.crop_size = self.protocol.crop_size if mode == "test" else settings.crop_size
        self.max_retries = max_retries
        self.index = index  # a prepared dataset's sidecar: frame pts and keyframes without a demux per open
        self.frames = frames or FrameReader()  # data.decoder / data.decode_device (decoders.py)
        self.store = store  # shards.ShardSplit: video i's bytes and index come from the shards, not a file
        self._cache: tuple[int, torch.Tensor] | None = None  # the last test video's views (read at once)

    def __len__(self) -> int:
        return len(self.records) * self.views

    def _load(self, video_idx: int, view: int, rng: np.random.Generator) -> dict:
        rec, s = self.records[video_idx], self.settings
        label = rec.label
        if self.store is not None:  # a streamed sample: its bytes and its index, never demuxed again
            source, entry = self.store.fetch(video_idx) if self.mode != "test" or self._cache is None \
                or self._cache[0] != video_idx else (None, None)
        else:
            source = rec.path
            entry = self.index.lookup(rec.path) if self.index is not None else None  # None: stale or not indexed
        if self.mode == "test":
            if self._cache is None or self._cache[0] != video_idx:
                self._cache = (video_idx, self.protocol.read_views(source, rec.num_frames, entry, self.frames))
            video = self._cache[1][view]
        else:
            indices = (lambda n: self.sampler.train(n, rng)) if self.mode == "train" else self.sampler.val
            # encoded videos come at native size and the transform cuts its crop from them (one resampling
            # instead of swscale's whole-frame resize + the crop's); frame folders downscale in libjpeg
            decode_side = s.short_side if self.store is None and os.path.isdir(rec.path) else None
            frames = self.frames.read(source, indices, decode_side, frame_template=s.frame_template,
                                      start_index=s.start_index, num_frames=rec.num_frames, index_entry=entry)
            if self.mode == "train":
                video, flipped = train_transform(frames, rng, s.crop_size, s.scales, s.max_distort, s.flip,
                                                 s.short_side)
                if flipped:
                    label = self.flip_label_map.get(label, label)
            else:
                video = eval_transform(frames, s.crop_size, short_side=s.short_side)
        return {"video": video, "label": label, "video_idx": video_idx, "view_idx": view}

    def __getitem__(self, i: int) -> dict:
        # Randomness comes from torch's RNG, which Lightning's seed_everything(workers=True) and the
        # DataLoader's per-worker seeding make reproducible; numpy's global state is never used.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        video_idx, view = divmod(i, self.views)
        for _ in range(self.max_retries + 1):
            path = self.records[video_idx].path
            if not self.bad_files.known(path):
                try:
                    return {**self._load(video_idx, view, rng), "valid": True}
                except (VideoDecodeError, OSError) as e:  # file problems only; bugs still raise
                    self.bad_files.add(path, f"{type(e).__name__}: {e}")
            if self.mode != "train":
                # evaluation never substitutes another video (a duplicate would bias val/top1 and the
                # best-checkpoint choice): an invalid item that the LightningModule leaves out
                size = self.crop_size
                video = torch.zeros(self.sampler.num_frames, 3, size, size, dtype=torch.uint8)
                return {"video": video, "label": self.records[video_idx].label, "video_idx": video_idx,
                        "view_idx": view, "valid": False}
            video_idx = int(rng.integers(len(self.records)))  # training: another random video instead
        raise TooManyBadFilesError(
            f"{self.max_retries + 1} videos in a row were unreadable (last: {path}); "
            f"see {self.bad_files.path}"
        )
