"""The index sidecar of a prepared dataset: what the loader would otherwise demux from every file on every open.

``python -m tanet_lightning.prepare`` writes ``<root>/video_index.npz`` beside the videos it re-encodes. Per
video: frame count, sorted frame pts, keyframe pts, width, height, fps, time base, the video stream they
describe (FFmpeg's pick in a file with several; a prepared copy has one) and the source's stream prepare
kept, and the file's size and mtime_ns, so an entry whose file has changed since (re-encoded, replaced,
copied without its mtime) is stale and the loader demuxes that file as before. ``lookup`` costs one
``stat``; a demux reads every packet.

Why one uncompressed ``.npz`` of flat columns: 250k videos load in well under a second (a handful of arrays,
no per-video Python objects until a lookup), without pickle, and the file stays far smaller than one JSON
object per video. The pts of a constant-rate file (every prepared mp4) are stored as start + step; only
other files keep their full pts arrays. Keyframes are stored as frame indices.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INDEX_NAME = "video_index.npz"
VERSION = 2  # 2: the stream columns; a version-1 sidecar reads with stream 0 and an unknown source stream
_SCALARS = ("num_frames", "width", "height", "fps_num", "fps_den", "tb_num", "tb_den", "size", "mtime_ns",
            "source_size", "source_mtime_ns", "pts_start", "pts_step", "stream", "source_stream")
_ADDED = {"stream": 0, "source_stream": -1}  # columns a version-1 sidecar lacks, and their values there


@dataclass(frozen=True, eq=False)
class IndexEntry:
    """One video's index: what ``io._demux_index`` would find in it, and the file it was found in. Kept
    compact (a constant-rate file's pts as start + step), so that 250k of them fit in memory."""

    num_frames: int
    pts_start: int
    pts_step: int  # > 0: frame i has pts start + step * i; 0: the pts are in pts_table
    pts_table: np.ndarray | None  # int64, sorted; only for files whose rate is not constant
    key_frames: np.ndarray  # int64 frame indices of the keyframes (0 first)
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    size: int  # bytes of the indexed file
    mtime_ns: int
    source_size: int = -1  # the file it was prepared from (prepare's resume check); -1 = unknown
    source_mtime_ns: int = -1
    stream: int = 0  # the container's index of the video stream described (and read): FFmpeg's pick
    source_stream: int = -1  # the source's video stream prepare re-encoded; -1 = unknown

    @classmethod
    def from_pts(cls, pts: np.ndarray, keys: np.ndarray, **fields) -> IndexEntry:
        """From sorted frame pts and keyframe pts (``io._demux_index``'s)."""
        pts, keys = np.asarray(pts, dtype=np.int64), np.asarray(keys, dtype=np.int64)
        key_frames = np.searchsorted(pts, keys)
        if len(keys) and (key_frames.max() >= len(pts) or not np.array_equal(pts[key_frames], keys)):
            raise ValueError("keyframe pts that are not frame pts")
        step = int(pts[1] - pts[0]) if len(pts) > 1 else 1
        regular = len(pts) > 0 and step > 0 and np.array_equal(pts, pts[0] + step * np.arange(len(pts)))
        return cls(num_frames=len(pts), pts_start=int(pts[0]) if regular else 0, pts_step=step if regular else 0,
                   pts_table=None if regular else pts, key_frames=key_frames.astype(np.int64), **fields)

    @property
    def pts(self) -> np.ndarray:
        """Every frame's pts (int64, sorted): frame i has pts[i]."""
        if self.pts_step > 0:
            return self.pts_start + self.pts_step * np.arange(self.num_frames, dtype=np.int64)
        return self.pts_table

    @property
    def keys(self) -> np.ndarray:
        """The keyframes' pts."""
        return self.pts[self.key_frames]

    def describes(self, stat: os.stat_result) -> bool:
        """Still the file it was made from (same size and modification time)."""
        return stat.st_size == self.size and stat.st_mtime_ns == self.mtime_ns


class VideoIndex:
    """The sidecar of one dataset root: ``VideoIndex.load(root)``, then ``lookup(path)`` per open."""

    def __init__(self, root: str | os.PathLike, paths: list[str], columns: Mapping[str, np.ndarray]):
        self.root = os.path.abspath(root)
        self.paths = paths
        self._cols = dict(columns)
        self._rows = {p: i for i, p in enumerate(paths)}

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def load(cls, root: str | os.PathLike) -> VideoIndex | None:
        """The sidecar of ``root``; None when there is none (or it cannot be read: the loader demuxes)."""
        path = Path(root) / INDEX_NAME
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                cols = {k: z[k] for k in z.files}
            version = int(cols.pop("version"))
            if version not in (1, VERSION):
                raise ValueError(f"version {version}, not {VERSION}")
            names = bytes(cols.pop("paths")).decode("utf-8")
            paths = names.split("\0") if names else []
            for k, v in _ADDED.items():
                if version == 1:
                    cols[k] = np.full(len(paths), v, dtype=np.int64)
            if any(len(cols[k]) != len(paths) for k in _SCALARS):
                raise ValueError("columns of unequal length")
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s cannot be read (%s): videos are indexed on every open instead; run "
                        "python -m tanet_lightning.prepare again to rewrite it", path, e)
            return None
        log.info("%s: the frame index of %d videos, read instead of demuxing them", path, len(paths))
        return cls(root, paths, cols)

    def _relative(self, path: str | os.PathLike) -> str:
        return os.path.relpath(os.path.abspath(path), self.root)

    def entry(self, rel: str) -> IndexEntry | None:
        """The stored entry of a root-relative path, without checking the file."""
        i = self._rows.get(rel)
        if i is None:
            return None
        c = self._cols
        table = None if c["pts_step"][i] > 0 else c["pts"][c["pts_offsets"][i]:c["pts_offsets"][i + 1]]
        return IndexEntry(
            num_frames=int(c["num_frames"][i]), pts_start=int(c["pts_start"][i]), pts_step=int(c["pts_step"][i]),
            pts_table=table, key_frames=c["keys"][c["key_offsets"][i]:c["key_offsets"][i + 1]],
            width=int(c["width"][i]), height=int(c["height"][i]),
            fps=Fraction(int(c["fps_num"][i]), int(c["fps_den"][i])),
            time_base=Fraction(int(c["tb_num"][i]), int(c["tb_den"][i])),
            size=int(c["size"][i]), mtime_ns=int(c["mtime_ns"][i]),
            source_size=int(c["source_size"][i]), source_mtime_ns=int(c["source_mtime_ns"][i]),
            stream=int(c["stream"][i]), source_stream=int(c["source_stream"][i]))

    def entries(self) -> dict[str, IndexEntry]:
        return {p: self.entry(p) for p in self.paths}

    def lookup(self, path: str | os.PathLike) -> IndexEntry | None:
        """The entry of ``path`` (absolute, or relative to the working directory) if it still describes the
        file there; None when the video is not indexed, missing, or changed since (stale)."""
        entry = self.entry(self._relative(path))
        if entry is None:
            return None
        try:
            return entry if entry.describes(os.stat(path)) else None
        except OSError:
            return None


def write_index(root: str | os.PathLike, entries: Mapping[str, IndexEntry]) -> Path:
    """Write ``<root>/video_index.npz`` for ``entries`` ({root-relative path: entry}), atomically."""
    paths = sorted(entries)
    if any("\0" in p for p in paths):  # the separator of the paths column
        raise ValueError("a path with a NUL character cannot be indexed")
    cols: dict[str, list] = {k: [] for k in _SCALARS}
    pts_parts, key_parts, pts_offsets, key_offsets = [], [], [0], [0]
    for p in paths:
        e = entries[p]
        values = dict(num_frames=e.num_frames, width=e.width, height=e.height,
                      fps_num=e.fps.numerator, fps_den=e.fps.denominator,
                      tb_num=e.time_base.numerator, tb_den=e.time_base.denominator, size=e.size,
                      mtime_ns=e.mtime_ns, source_size=e.source_size, source_mtime_ns=e.source_mtime_ns,
                      pts_start=e.pts_start, pts_step=e.pts_step, stream=e.stream, source_stream=e.source_stream)
        for k, v in values.items():
            cols[k].append(v)
        if e.pts_step <= 0:
            pts_parts.append(np.asarray(e.pts_table, dtype=np.int64))
        pts_offsets.append(pts_offsets[-1] + (0 if e.pts_step > 0 else e.num_frames))
        key_parts.append(np.asarray(e.key_frames, dtype=np.int64))
        key_offsets.append(key_offsets[-1] + len(e.key_frames))
    flat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
    arrays.update(pts=flat(pts_parts), keys=flat(key_parts), pts_offsets=np.asarray(pts_offsets, np.int64),
                  key_offsets=np.asarray(key_offsets, np.int64), version=np.int64(VERSION),
                  paths=np.frombuffer("\0".join(paths).encode("utf-8"), dtype=np.uint8))
    root = Path(root)
    target = root / INDEX_NAME
    tmp = root / f".{INDEX_NAME}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target
