"""Frame-exact clip reading from encoded videos (PyAV) and frame folders.

`read_video_frames(path, indices)` returns the RGB frames a sequential decode would give at those
0-based indices, but decodes only what the clip needs:

1. demux the packets once (no decoding, ~ms) to get every frame's pts and the keyframe pts;
   sorted pts -> frame index, which stays correct for variable frame rate (pts*fps does not);
2. seek backwards to the keyframe before the first wanted frame and decode forward, re-seeking only
   when the next wanted frame lies beyond a keyframe we have not reached yet;
3. convert only the wanted frames to RGB, with one reused swscale context per process (PyAV's
   `frame.to_ndarray` builds a new SwsContext with its own thread pool for every frame: 4-10x slower).

Containers are opened inside the call (never in a Dataset's __init__: a container inherited by forked
DataLoader workers hangs or corrupts) and always closed, even on errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from PIL import Image

from .index import IndexEntry
from .settings import ClipSettings

Indices = Sequence[int] | np.ndarray | torch.Tensor
IndexFn = Callable[[int], Indices]  # num_frames -> indices, so one open serves probe and decode

# Decoding a handful of frames past the keyframe costs less than a seek (decoder flush and B-frame
# refill); below this gap we keep decoding forward instead of seeking.
SEEK_MIN_GAP = 4
FRAME_TEMPLATE, START_INDEX = ClipSettings.frame_template, ClipSettings.start_index  # the data.* defaults


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) is missing, unreadable, or yields fewer frames than it claims."""


class _PtsMismatch(VideoDecodeError):
    """Decoded frame timestamps do not match the demuxed ones (odd containers): decode in order instead."""


_reformatter: tuple[int, VideoReformatter] | None = None


def _get_reformatter() -> VideoReformatter:
    # One swscale context per process: DataLoader workers are forked, so key it on the pid.
    global _reformatter
    if _reformatter is None or _reformatter[0] != os.getpid():
        _reformatter = (os.getpid(), VideoReformatter())
    return _reformatter[1]


def short_side_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after scaling the shorter side to `short_side`, keeping the aspect ratio."""
    if short_side is None or min(height, width) == short_side:
        return height, width
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def _as_index_array(indices: Indices | IndexFn, num_frames: int) -> np.ndarray:
    if callable(indices):
        indices = indices(num_frames)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("read_video_frames: empty index list")
    if num_frames <= 0:
        raise VideoDecodeError("video has no frames")
    if idx.min() < 0 or idx.max() >= num_frames:
        raise IndexError(f"frame indices {idx.tolist()} out of range for a video of {num_frames} frames")
    return idx


# ----------------------------------------------------------------------------------------------------
# encoded videos


def _demux_index(container: av.container.InputContainer, stream: av.video.VideoStream):
    """(sorted frame pts, keyframe pts, frame count) from the packets alone (no decoding).
    pts and keys are None when the timestamps cannot index frames (raw streams, duplicates)."""
    pts, key = [], []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:  # flush packet / frames cut by an edit list
            continue
        t = packet.pts if packet.pts is not None else packet.dts
        pts.append(t)
        if packet.is_keyframe:
            key.append(t)
    if None in pts or None in key:
        return None, None, len(pts)
    pts = np.sort(np.asarray(pts, dtype=np.int64))
    if pts.size and (np.diff(pts) <= 0).any():  # duplicate timestamps: cannot map pts -> index
        return None, None, len(pts)
    keys = np.sort(np.asarray(key, dtype=np.int64))
    if pts.size and (keys.size == 0 or keys[0] > pts[0]):
        keys = np.concatenate([pts[:1], keys])  # a seek to the first packet always works
    return pts, keys, len(pts)


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    out = _get_reformatter().reformat(
        frame, format="rgb24", width=w, height=h, interpolation="BILINEAR", threads=1
    )
    return out.to_ndarray()


def _decode_runs(container, stream, pts: np.ndarray, keys: np.ndarray, wanted: np.ndarray, size) -> dict:
    """Decode the sorted unique frame indices `wanted`; returns {index: rgb array}."""
    frames: dict[int, np.ndarray] = {}
    # index of the keyframe at or before each wanted frame: where a seek for it lands
    key_idx = np.searchsorted(pts, keys[np.searchsorted(keys, pts[wanted], side="right") - 1])
    i = 0
    while i < len(wanted):
        container.seek(int(pts[key_idx[i]]), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            f = int(np.searchsorted(pts, frame.pts)) if frame.pts is not None else -1
            if f < 0 or f >= len(pts) or pts[f] != frame.pts:
                raise _PtsMismatch(f"decoder returned a frame with unknown pts {frame.pts}")
            if f < wanted[i]:
                continue  # on the way from the keyframe to the wanted frame: decoded, never converted
            if f > wanted[i]:
                raise _PtsMismatch(f"frame {int(wanted[i])} never came out of the decoder")
            frames[f] = _to_rgb(frame, size)
            i += 1
            # stop here when done, or when a seek skips more than decoding the gap would cost
            if i == len(wanted) or key_idx[i] - f > SEEK_MIN_GAP:
                break
        else:
            raise VideoDecodeError(f"stream ended before frame {int(wanted[i])} ({len(pts)} frames demuxed)")
    return frames


def _decode_sequential(container, stream, wanted: np.ndarray, size) -> dict:
    """Fallback for streams without usable timestamps: frame index = decode order."""
    frames, want, last = {}, set(wanted.tolist()), int(wanted.max())
    for f, frame in enumerate(container.decode(stream)):
        if f in want:
            frames[f] = _to_rgb(frame, size)
        if f >= last:
            break
    return frames


@contextmanager
def _open_video(path: str):
    """(container, first video stream), single-threaded; always closed; FFmpeg errors -> VideoDecodeError."""
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"cannot open video {path}: {e}") from e
    try:
        if not container.streams.video:
            raise VideoDecodeError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1  # workers give the parallelism; threads only add seek latency
        yield container, stream
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot decode {path}: {e}") from e
    finally:
        container.close()


def _read_encoded(path: str, indices: Indices | IndexFn, short_side: int | None,
                  entry: IndexEntry | None = None) -> torch.Tensor:
    frames = None
    with _open_video(path) as (container, stream):
        # a prepared dataset's sidecar (index.py) saves the demux pass; the caller checked it is not stale
        pts, keys, num_frames = (entry.pts, entry.keys, entry.num_frames) if entry is not None \
            else _demux_index(container, stream)
        idx = _as_index_array(indices, num_frames)
        wanted = np.unique(idx)
        size = short_side_size(stream.codec_context.height, stream.codec_context.width, short_side)
        if pts is not None:
            try:
                frames = _decode_runs(container, stream, pts, keys, wanted, size)
            except _PtsMismatch:
                frames = None
    if frames is None:  # no usable timestamps: decode in order from a fresh open (raw streams cannot seek)
        with _open_video(path) as (container, stream):
            frames = _decode_sequential(container, stream, wanted, size)
    missing = [int(f) for f in wanted if int(f) not in frames]
    if missing:
        raise VideoDecodeError(f"{path}: frames {missing[:8]} could not be decoded ({num_frames} expected)")
    return torch.from_numpy(np.stack([frames[int(f)] for f in idx]))


# ----------------------------------------------------------------------------------------------------
# frame folders (Something-Something V1 style: <dir>/00001.jpg, 1-based)


def count_folder_frames(folder: str | Path, frame_template: str = FRAME_TEMPLATE) -> int:
    """Number of files in `folder` with the template's extension."""
    ext = os.path.splitext(frame_template)[1]
    try:
        return sum(1 for name in os.listdir(folder) if name.endswith(ext))
    except OSError as e:
        raise VideoDecodeError(f"cannot list frame folder {folder}: {e}") from e


def _read_folder(
    folder: str,
    indices: Indices | IndexFn,
    short_side: int | None,
    frame_template: str,
    start_index: int,
    num_frames: int | None,
) -> torch.Tensor:
    n = num_frames if num_frames is not None else count_folder_frames(folder, frame_template)
    idx = _as_index_array(indices, n)
    frames = {}
    for f in np.unique(idx).tolist():
        file = os.path.join(folder, frame_template.format(f + start_index))
        try:
            with Image.open(file) as img:
                size = short_side_size(img.height, img.width, short_side)
                if size != (img.height, img.width):
                    img.draft("RGB", (size[1], size[0]))  # JPEG: let libjpeg downscale by 2^k first (cheap)
                    img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
                frames[f] = np.asarray(img.convert("RGB"))
        except OSError as e:
            raise VideoDecodeError(f"cannot read frame {file}: {e}") from e
    return torch.from_numpy(np.stack([frames[f] for f in idx.tolist()]))


# ----------------------------------------------------------------------------------------------------


def read_video_frames(
    path: str | Path,
    indices: Indices | IndexFn,
    short_side: int | None = None,
    *,
    frame_template: str = FRAME_TEMPLATE,
    start_index: int = START_INDEX,
    num_frames: int | None = None,
    index_entry: IndexEntry | None = None,
) -> torch.Tensor:
    """RGB frames at 0-based `indices` as uint8 (T, H, W, 3), identical to a sequential decode.

    `path` is a video file or a frame folder (files named `frame_template.format(i + start_index)`;
    `num_frames` skips counting the folder). `indices` may repeat and be unordered, or be a callable
    `num_frames -> indices` so the sampler sees the true frame count without a second open.
    `short_side` resizes inside the decoder (swscale, bilinear) so full-size RGB is never built.
    `index_entry` (``VideoIndex.lookup(path)``, index.py) gives the frame pts and keyframes of a video file
    instead of demuxing it. Raises VideoDecodeError for missing/corrupt inputs, IndexError for out-of-range indices.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _read_folder(path, indices, short_side, frame_template, start_index, num_frames)
    if not os.path.exists(path):
        raise VideoDecodeError(f"video file not found: {path}")
    return _read_encoded(path, indices, short_side, index_entry)


def probe_num_frames(path: str | Path, frame_template: str = FRAME_TEMPLATE) -> int:
    """Exact frame count (demuxed packets, not the header, which webm leaves at 0)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return count_folder_frames(path, frame_template)
    with _open_video(path) as (container, stream):
        return _demux_index(container, stream)[2]
