"""Frame-exact clip reading from encoded videos (PyAV) and frame folders.

`read_video_frames(path, indices)` returns the RGB frames a sequential decode would give at those
0-based indices, but decodes only what the clip needs:

1. open from the container header alone (FFmpeg's probe would decode the first frames on every open);
2. demux the packets once (no decoding, ~ms) to get every frame's pts and the keyframe pts;
   sorted pts -> frame index, which stays correct for variable frame rate (pts*fps does not);
3. decode forward from the keyframe before the first wanted frame, out of the packets the index pass
   kept (no seek, no second read: a single-keyframe webm is one pass), starting a new run only when the
   next wanted frame lies beyond a keyframe not reached yet; frames nobody wants and nothing refers to
   (most B-frames) are skipped by the decoder;
4. convert only the wanted frames to RGB, with one reused swscale context per process (PyAV's
   `frame.to_ndarray` builds a new SwsContext with its own thread pool for every frame: 4-10x slower).

Containers are opened inside the call (never in a Dataset's __init__: a container inherited by forked
DataLoader workers hangs or corrupts) and always closed, even on errors.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

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

# av.open runs FFmpeg's find_stream_info, which opens a decoder and decodes the first frames of the file
# (H.264: up to 7, to guess the B-frame delay; VP9: the keyframe, for the pixel format): 1-5 ms on every
# open, for frames the clip then decodes again. A decoder whitelist naming no decoder makes that probe
# decoder fail to open, so the stream parameters come from the container header alone (mp4, mkv/webm and
# avi carry them); our own decoder context is set up from those and opened on the first packet. Streams
# known only after probing (MPEG-TS/PS: PyAV refuses stream options) or without a size in the header are
# opened the usual way, and so is the retry after a timestamp mismatch.
_HEADER_ONLY = [{"codec_whitelist": "none (header only)"}] * 8
# Packets kept from the indexing pass, so decoding needs neither a seek nor a second read of the file:
# up to this many bytes per open video (a 10 s 340x256 clip is ~0.5 MB); beyond it, runs seek in the file.
KEEP_PACKET_BYTES = 16 << 20


class _Demuxed(NamedTuple):
    """The indexing pass over a video's packets (no decoding).

    pts: every frame's pts, sorted (frame index -> pts); keys: keyframe pts, sorted; both None when the
    timestamps cannot index frames (raw streams, duplicates). packets: all packets in decode order
    (None when over KEEP_PACKET_BYTES or not kept); key_pos: keyframe pts -> its position in `packets`;
    consumed: the pass read the container to its end (an index from elsewhere, e.g. a sidecar: False).
    """

    pts: np.ndarray | None
    keys: np.ndarray | None
    num_frames: int
    packets: list | None = None
    key_pos: dict | None = None
    consumed: bool = False


def _demux(container, stream, keep_bytes: int = 0) -> _Demuxed:
    pts, key, packets, key_pos, kept = [], [], [] if keep_bytes > 0 else None, {}, 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        if packets is not None:
            kept += packet.size
            packets = packets if kept <= keep_bytes else None
        if packets is not None:
            packets.append(packet)
        if packet.is_discard:  # frames cut by an edit list: decoded (they may be references), never output
            continue
        t = packet.pts if packet.pts is not None else packet.dts
        pts.append(t)
        if packet.is_keyframe:
            key.append(t)
            if packets is not None:
                key_pos[t] = len(packets) - 1
    if None in pts or None in key:
        return _Demuxed(None, None, len(pts), consumed=True)
    pts = np.sort(np.asarray(pts, dtype=np.int64))
    if pts.size and (np.diff(pts) <= 0).any():  # duplicate timestamps: cannot map pts -> index
        return _Demuxed(None, None, len(pts), consumed=True)
    keys = np.sort(np.asarray(key, dtype=np.int64))
    if pts.size and (keys.size == 0 or keys[0] > pts[0]):
        keys = np.concatenate([pts[:1], keys])  # a seek to the first packet always works
        key_pos.setdefault(int(pts[0]), 0)
    return _Demuxed(pts, keys, len(pts), packets, key_pos if packets is not None else None, consumed=True)


def _demux_index(container: av.container.InputContainer, stream: av.video.VideoStream):
    """(sorted frame pts, keyframe pts, frame count) from the packets alone (no decoding).
    pts and keys are None when the timestamps cannot index frames (raw streams, duplicates)."""
    return _demux(container, stream)[:3]


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if (h, w) == (frame.height, frame.width):  # no scaling: swscale's plain colour conversion
        return _get_reformatter().reformat(frame, format="rgb24", threads=1).to_ndarray()
    out = _get_reformatter().reformat(
        frame, format="rgb24", width=w, height=h, interpolation="BILINEAR", threads=1
    )
    return out.to_ndarray()


def _run_packets(container, stream, demuxed: _Demuxed, key_pts: int, first: bool):
    """Packets from the keyframe `key_pts` on, then None (drain the decoder).

    From the kept packets when there are any (no seek, no read); else from the file, seeking unless this
    is the first run of an unread container and the keyframe is the stream's first frame."""
    if demuxed.packets is not None:
        if not first:
            stream.codec_context.flush_buffers()
        yield from demuxed.packets[demuxed.key_pos[key_pts]:]
    else:
        if not (first and not demuxed.consumed and key_pts == demuxed.pts[0]):
            container.seek(key_pts, stream=stream, backward=True, any_frame=False)  # flushes the decoder
        for packet in container.demux(stream):
            if packet.size:
                yield packet
    yield None


def _decode_runs(container, stream, demuxed: _Demuxed, wanted: np.ndarray, size) -> dict:
    """Decode the sorted unique frame indices `wanted`; returns {index: rgb array}.

    Runs start at the keyframe before a wanted frame and go forward; a new run (a seek) starts only when
    the next wanted frame lies beyond a keyframe not reached yet. Packets of frames nobody wants are
    decoded with skip_frame=NONREF: a frame no other frame refers to (most B-frames) is then skipped
    entirely, and reference frames decode as usual, so the wanted frames are bit-identical."""
    pts = demuxed.pts
    frame_of = dict(zip(pts.tolist(), range(len(pts))))
    wanted_pts = set(pts[wanted].tolist())
    # index of the keyframe at or before each wanted frame: where a run for it starts
    key_idx = np.searchsorted(pts, demuxed.keys[np.searchsorted(demuxed.keys, pts[wanted], side="right") - 1])
    cc = stream.codec_context
    frames: dict[int, np.ndarray] = {}
    i, skipping = 0, False
    while i < len(wanted):
        target = int(wanted[i])
        for packet in _run_packets(container, stream, demuxed, int(pts[key_idx[i]]), first=not frames):
            skip = packet is not None and (packet.pts if packet.pts is not None else packet.dts) not in wanted_pts
            if skip != skipping:
                cc.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            done = False
            for frame in cc.decode(packet):
                f = frame_of.get(frame.pts, -1)
                if f < 0:
                    raise _PtsMismatch(f"decoder returned a frame with unknown pts {frame.pts}")
                if f < target:
                    continue  # on the way from the keyframe to the wanted frame: decoded, never converted
                if f > target:
                    raise _PtsMismatch(f"frame {target} never came out of the decoder")
                frames[f] = _to_rgb(frame, size)
                i += 1
                # stop here when done, or when a new run skips more than decoding the gap would cost
                if i == len(wanted) or key_idx[i] - f > SEEK_MIN_GAP:
                    done = True
                    break
                target = int(wanted[i])
            if done:
                break
        else:
            raise VideoDecodeError(f"stream ended before frame {target} ({len(pts)} frames demuxed)")
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


class EncodedVideo:
    """An encoded video held in memory (a streamed shard's sample), named for messages by its video id. Each
    open reads it from the start through its own BytesIO, so the retry paths below see the same bytes."""

    def __init__(self, data: bytes | memoryview, name: str):
        self.data, self.name = data, name

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)

    def __str__(self) -> str:
        return self.name


def _input(path: str | EncodedVideo):
    return path.open() if isinstance(path, EncodedVideo) else path


def _open_container(path: str | EncodedVideo, header_only: bool) -> av.container.InputContainer:
    if header_only:
        try:
            container = av.open(_input(path), stream_options=_HEADER_ONLY)
        except ValueError:  # streams known only after probing (MPEG-TS/PS)
            return av.open(_input(path))
        streams = container.streams.video
        # several video streams: which one FFmpeg picks depends on what its probe decodes (frame counts
        # rank the candidates), so only a probed open picks the one torchcodec and the ffmpeg CLI read
        if not streams or (len(streams) == 1 and streams[0].codec_context.width and streams[0].codec_context.height):
            return container
        container.close()  # no size in the header, or a choice to make: let FFmpeg probe the streams
    return av.open(_input(path))


def best_video_stream(container: av.container.InputContainer) -> av.video.VideoStream:
    """The video stream FFmpeg's av_find_best_stream picks (default disposition, then probed frames, bit
    rate): what torchcodec and the ffmpeg CLI read from a file with several, not necessarily index 0."""
    return container.streams.best("video")


@contextmanager
def _open_video(path: str, header_only: bool = True, stream_index: int | None = None):
    """(container, video stream), single-threaded; always closed; FFmpeg errors -> VideoDecodeError.
    The stream is FFmpeg's pick (best_video_stream), or the one at `stream_index` (an index entry's).
    header_only: skip FFmpeg's probe decode (see _HEADER_ONLY)."""
    try:
        container = _open_container(path, header_only)
    except (av.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"cannot open video {path}: {e}") from e
    try:
        if not container.streams.video:
            raise VideoDecodeError(f"{path} has no video stream")
        if stream_index is None:
            stream = best_video_stream(container)
        elif stream_index < len(container.streams) and container.streams[stream_index].type == "video":
            stream = container.streams[stream_index]
        else:
            raise VideoDecodeError(f"{path} has no video stream {stream_index} (its index entry names it)")
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1  # workers give the parallelism; threads only add seek latency
        yield container, stream
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot decode {path}: {e}") from e
    finally:
        container.close()


def _read_encoded(path: str, indices: Indices | IndexFn, short_side: int | None,
                  entry: IndexEntry | None = None) -> torch.Tensor:
    frames, idx = None, None
    stream_index = entry.stream if entry is not None else None  # else FFmpeg's pick, kept for the retries
    # a header-only open first; on any failure (e.g. an H.264 stream whose B-frame delay only the probe
    # finds: a timestamp mismatch) once more with FFmpeg's probe; without usable timestamps, in decode order
    for header_only in (True, False):
        try:
            with _open_video(path, header_only, stream_index) as (container, stream):
                stream_index = stream.index
                # a prepared dataset's sidecar (index.py) saves the demux pass; the caller checked it is not stale
                demuxed = _Demuxed(entry.pts, entry.keys, entry.num_frames) if entry is not None \
                    else _demux(container, stream, KEEP_PACKET_BYTES)
                if idx is None:
                    idx = _as_index_array(indices, demuxed.num_frames)
                    wanted = np.unique(idx)
                size = short_side_size(stream.codec_context.height, stream.codec_context.width, short_side)
                if demuxed.pts is not None:
                    frames = _decode_runs(container, stream, demuxed, wanted, size)
            break
        except _PtsMismatch:
            frames = None
        except VideoDecodeError:
            if not header_only:
                raise
    if frames is None:  # no usable timestamps: decode in order from a fresh open (raw streams cannot seek)
        with _open_video(path, header_only=False, stream_index=stream_index) as (container, stream):
            frames = _decode_sequential(container, stream, wanted, size)
    missing = [int(f) for f in wanted if int(f) not in frames]
    if missing:
        raise VideoDecodeError(f"{path}: frames {missing[:8]} could not be decoded ({demuxed.num_frames} expected)")
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
    path: str | Path | EncodedVideo | bytes,
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
    instead of demuxing it (and the stream to read: FFmpeg's pick otherwise, see best_video_stream). `path` may
    also be the encoded file itself (bytes, or an ``EncodedVideo`` that names it): the frames are those of the
    same file read from disk.
    Raises VideoDecodeError for missing/corrupt inputs, IndexError for out-of-range indices.
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = EncodedVideo(path, "<bytes>")
    if isinstance(path, EncodedVideo):
        return _read_encoded(path, indices, short_side, index_entry)
    path = os.fspath(path)
    if os.path.isdir(path):
        return _read_folder(path, indices, short_side, frame_template, start_index, num_frames)
    if not os.path.exists(path):
        raise VideoDecodeError(f"video file not found: {path}")
    return _read_encoded(path, indices, short_side, index_entry)


def video_stream(path: str | os.PathLike) -> int:
    """The index of the video stream the loader reads from `path` (FFmpeg's pick, best_video_stream)."""
    with _open_video(os.fspath(path)) as (_, stream):
        return stream.index


def probe_num_frames(path: str | Path, frame_template: str = FRAME_TEMPLATE) -> int:
    """Exact frame count (demuxed packets, not the header, which webm leaves at 0)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return count_folder_frames(path, frame_template)
    with _open_video(path) as (container, stream):
        return _demux_index(container, stream)[2]
