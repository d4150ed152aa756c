"""Re-encode one video for fast clip reading, and index it (the unit of ``python -m tanet_lightning.prepare``).

A clip's cost is set by the keyframe spacing of its file: reading 8 frames of a video with a keyframe every
250 frames decodes up to 250 frames. ``prepare_video`` writes H.264 (yuv420p, no audio, tuned for fast
decoding) with a keyframe at least every ``gop`` frames (closed GOPs: a seek decodes forward only), at a
short side that leaves the recipes' 256 px headroom (never upscaled, even sizes, aspect kept). Every
decoded frame is kept, in order, with constant-rate timestamps: frame i of the output is frame i of the
source as the loader numbers it, so a sampler picks the same frames from both.

The output is verified before it gets its name (same frame count as the source; keyframe spacing; a
sample of frames compared with the source's, pixel-close: re-encoding is lossy), written under a temporary
name and renamed, so an interrupted run never leaves a truncated file under a final name. A readable video
is never given up for its copy: a copy that is not pixel-close (noise-like textures lose more than the check
allows at ``crf=23``) is encoded again at higher quality, down to lossless, and a copy that still does not
check out is replaced by the source itself, copied as it is. Only a source that cannot be read whole fails.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .index import IndexEntry
from .io import VideoDecodeError, _demux_index, _open_video, _to_rgb, read_video_frames, video_stream

GOP, SHORT_SIDE, CRF = 30, 320, 23
PRESET = "veryfast"  # x264: ~2x the speed of "medium" at the same crf for a few % more bytes
# fastdecode (no CABAC, no deblocking): measured on a 340x256 GOP-250 source, dense 8x8 clips read 4.3x as
# fast as from the source (crf 23 without it: 2.5x; crf 18: 1.2-1.3x, its bits are the source's noise), at
# the same PSNR to the source as crf 18 without it (37.7 vs 38.3 dB) and about the source's size
X264_OPTIONS = {"tune": "fastdecode"}
SAMPLE_FRAMES = 5  # frames compared with the source's after writing
MAX_MEAN_ERROR = 12.0  # mean |difference| (0-255) of a sampled frame: a lossy copy is ~1-4, a wrong frame far more
QUALITY_STEP = 6  # the retries' crf step (x264: -6 about doubles the bitrate); the last retry is lossless
MATROSKA = (".mkv", ".webm")  # kept as Matroska (WebM is Matroska; H.264 in it reads the same); else MP4


class CopyCheckError(VideoDecodeError):
    """The source read whole, but its copy does not check out; ``pixels``: only the pixel comparison failed
    (more bits can fix that; a wrong frame count or keyframe spacing they cannot)."""

    def __init__(self, message: str, pixels: bool = False):
        super().__init__(message)
        self.pixels = pixels


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What ``prepare_video`` wrote: the copy's index entry and, when the asked crf's copy did not check out,
    what was kept instead (``"crf=N"``, ``"lossless"`` or ``"source"``: the source copied as it is) and why."""

    entry: IndexEntry
    kept: str | None = None
    why: str = ""


def qualities(crf: int) -> list[int]:
    """The crf values tried in turn: the asked one, then ``QUALITY_STEP`` lower each time, down to 0 (lossless)."""
    return [*range(crf, 0, -QUALITY_STEP), 0]


def output_size(height: int, width: int, short_side: int | None = SHORT_SIDE) -> tuple[int, int]:
    """(height, width) with the shorter side at ``short_side`` (or the source's, when smaller: never
    upscaled), the aspect ratio kept, both even (yuv420p) and never above the source's."""
    short = min(height, width)
    scale = 1.0 if short_side is None or short <= short_side else short_side / short

    def even(v: float, limit: int) -> int:
        return max(2, min(2 * round(v / 2), limit - limit % 2))

    return even(height * scale, height), even(width * scale, width)


def container_format(path: str | os.PathLike) -> str:
    return "matroska" if Path(path).suffix.lower() in MATROSKA else "mp4"


def _rate(stream: av.video.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return Fraction(rate).limit_denominator(1001 * 100)
    return Fraction(25)


def _encode(src: str, tmp: Path, fmt: str, n: int, gop: int, short_side: int | None, crf: int) -> dict[int, np.ndarray]:
    """Decode ``src`` in order and encode every frame into ``tmp``; returns the sampled source frames (RGB
    at the output size) that the output is compared with."""
    sample = set(np.linspace(0, n - 1, min(SAMPLE_FRAMES, n)).round().astype(int).tolist())
    kept, count = {}, 0
    with _open_video(src) as (container, stream), av.open(str(tmp), "w", format=fmt) as out:
        height, width = output_size(stream.codec_context.height, stream.codec_context.width, short_side)
        fps = _rate(stream)
        enc = out.add_stream("libx264", rate=fps)
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.codec_context.thread_count = 1  # one process per core does the parallel work
        quality = {"crf": str(crf)} if crf > 0 else {"qp": "0"}  # qp 0: lossless H.264
        enc.options = {**quality, "preset": PRESET, **X264_OPTIONS,
                       "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for frame in container.decode(stream):
            small = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
            if count in sample:
                kept[count] = _to_rgb(small, (height, width))  # one reused swscale context (io.py)
            small.pts, small.time_base = count, 1 / fps  # constant rate: the output's pts are its frame indices
            out.mux(enc.encode(small))
            count += 1
        out.mux(enc.encode(None))
    if count != n:
        raise VideoDecodeError(f"{src}: {count} frames decode, but its container indexes {n} (truncated or "
                               f"corrupt)")
    return kept


def index_file(path: str | os.PathLike, source: os.stat_result | None = None) -> IndexEntry:
    """The index entry of a video file as it is now (one demux pass)."""
    path = os.fspath(path)
    with _open_video(path) as (container, stream):
        pts, keys, n = _demux_index(container, stream)
        if pts is None:
            raise VideoDecodeError(f"{path}: its timestamps cannot index frames")
        height, width, fps, tb = stream.codec_context.height, stream.codec_context.width, _rate(stream), \
            Fraction(stream.time_base)
        index = stream.index
    st = os.stat(path)
    return IndexEntry.from_pts(pts, keys, width=width, height=height, fps=fps, time_base=tb, size=st.st_size,
                               mtime_ns=st.st_mtime_ns, source_size=source.st_size if source else -1,
                               source_mtime_ns=source.st_mtime_ns if source else -1, stream=index)


def prepare_video(src: str | os.PathLike, dst: str | os.PathLike, gop: int = GOP, short_side: int | None = SHORT_SIDE,
                  crf: int = CRF, tmp: str | os.PathLike | None = None) -> Prepared:
    """Re-encode ``src`` into ``dst`` (see the module docstring) and return ``dst``'s index entry, with what
    was kept when the copy at ``crf`` did not check out.

    ``tmp``: the temporary file (default: a hidden name beside ``dst``; on the same file system, for the
    atomic rename). Raises ``VideoDecodeError`` when ``src`` cannot be read whole; nothing is left at
    ``dst`` or ``tmp`` then.
    """
    src, dst = os.fspath(src), Path(dst)
    tmp = Path(tmp) if tmp is not None else dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        source = os.stat(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        n = _count_frames(src)
        done = _checked_copy(src, tmp, container_format(dst), n, gop, short_side, crf, source)
        os.replace(tmp, dst)
    except (av.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"cannot prepare {src}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    st = os.stat(dst)  # the rename keeps the file's mtime; the entry names the file under its final name
    return dataclasses.replace(done, entry=dataclasses.replace(done.entry, size=st.st_size, mtime_ns=st.st_mtime_ns,
                                                             source_stream=video_stream(src)))


def _checked_copy(src: str, tmp: Path, fmt: str, n: int, gop: int, short_side: int | None, crf: int,
                  source: os.stat_result) -> Prepared:
    """A copy at ``tmp`` that checks out: at ``crf``, else at the first higher quality that does, else the
    source itself."""
    why = ""
    for q in qualities(crf):
        try:
            kept = _encode(src, tmp, fmt, n, gop, short_side, q)
            entry = index_file(tmp, source)
            _verify(tmp, entry, n, gop, kept)
            return Prepared(entry, None if q == crf else f"crf={q}" if q else "lossless", why)
        except CopyCheckError as e:
            why = why or f"at crf={crf}: {e}"
            if not e.pixels:
                break
    shutil.copyfile(src, tmp)  # the source reads whole (_encode counted its frames): it is a valid copy
    entry = index_file(tmp, source)
    if entry.num_frames != n:
        raise VideoDecodeError(f"{src}: {entry.num_frames} frames index in a copy of it, {n} in the file")
    return Prepared(entry, "source", why)


def _count_frames(src: str) -> int:
    """The source's frame count as the loader counts it (demuxed packets); a file with fewer packets than
    its header declares (an mp4 whose sample table outlives its data) is truncated."""
    with _open_video(src) as (container, stream):
        declared = int(stream.frames or 0)  # 0 where the container does not say (webm)
        n = _demux_index(container, stream)[2]
    if n == 0:
        raise VideoDecodeError(f"{src} has no frames")
    if declared and n < declared:
        raise VideoDecodeError(f"{src}: {n} of the {declared} frames its header declares are there (truncated)")
    return n


def _verify(tmp: Path, entry: IndexEntry, n: int, gop: int, kept: dict[int, np.ndarray]) -> None:
    if entry.num_frames != n:
        raise CopyCheckError(f"the re-encoded copy has {entry.num_frames} frames, the source {n}")
    key_idx = entry.key_frames
    gaps = np.diff(np.append(key_idx, n))
    if key_idx[0] != 0 or gaps.max() > gop:
        raise CopyCheckError(f"the copy has a keyframe interval of {int(gaps.max())} frames, not <= {gop}")
    idx = sorted(kept)
    got = read_video_frames(tmp, idx, index_entry=entry).numpy()
    for i, frame in zip(idx, got):
        error = float(np.abs(frame.astype(np.int16) - kept[i]).mean())
        if error > MAX_MEAN_ERROR:
            raise CopyCheckError(f"frame {i} of the copy differs from the source's by {error:.1f} on average "
                                 f"(> {MAX_MEAN_ERROR})", pixels=True)
