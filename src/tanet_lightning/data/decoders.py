"""Which library decodes the clips, on which device: ``data.decoder=pyav|torchcodec``, ``data.decode_device=cpu|cuda``.

``pyav`` (the default) is io.py's frame-exact reader. ``torchcodec`` (``pip install -e .[torchcodec]``) reads
the same frames: the same samplers see the same frame count and get the same frame indices, because it is
fed the frame table (pts, keyframes) of prepare's index sidecar when there is one (``custom_frame_mappings``:
no scan of the file per open) and otherwise scans the packets itself (``seek_mode="exact"``, what io.py's
demux pass does); it reads the stream FFmpeg picks (io.best_video_stream), or the one the index names; a
streamed shard's sample (io.EncodedVideo, the file's bytes) is read from memory by either decoder. Its
failures are ``VideoDecodeError``s, so the bad-file accounting (datasets.py) is the same. Where both run on
the same FFmpeg build (ffmpeg_libs.py links PyAV's) the frames are bit-identical at native size; a resized
read (``short_side``: the test views) resizes on the device with torch's antialiased bilinear filter instead
of swscale's, a few levels of difference (tests/data/test_data_torchcodec.py bounds it).

``decode_device=cuda`` decodes with NVDEC (torchcodec's default CUDA backend), in the main process (CUDA
cannot run in forked DataLoader workers: ``data.num_workers=0``); the frames stay on the GPU, where the
transforms crop them and ``on_after_batch_transfer`` normalises them. A codec NVDEC lacks is decoded on the
CPU by torchcodec itself and copied over, with one warning per process.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..base.errors import ConfigError
from .ffmpeg_libs import COMMAND
from .index import IndexEntry
from .io import (
    FRAME_TEMPLATE,
    START_INDEX,
    EncodedVideo,
    IndexFn,
    Indices,
    VideoDecodeError,
    _as_index_array,
    read_video_frames,
)
from .io import short_side_size as _short_side_size

log = logging.getLogger(__name__)

DECODERS = ("pyav", "torchcodec")
DECODE_DEVICES = ("cpu", "cuda")
HOW_TO_GET_FFMPEG = (
    "torchcodec needs FFmpeg's shared libraries (major version 4-9): install them (conda install -c conda-forge "
    "ffmpeg, or your distribution's libavcodec/libavformat packages), or use the ones PyAV bundles: "
    f"export LD_LIBRARY_PATH=$({COMMAND})${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} before starting Python "
    "(or data.decoder=pyav)")
_fallback_warned = False


def torchcodec_problem() -> str | None:
    """Why torchcodec cannot decode in this process (not installed, FFmpeg libraries missing), else None."""
    try:
        import torchcodec.decoders  # noqa: F401
        from torchcodec import _internally_replaced_utils as loader
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "torchcodec":
            return "torchcodec is not installed: pip install -e '.[torchcodec]' (the release matching torch)"
        raise
    try:  # `import torchcodec` succeeds without FFmpeg; its video decoder loads libtorchcodec + FFmpeg on first use
        loader.load_core_libraries()
    except (OSError, RuntimeError):  # its message lists a traceback per FFmpeg version it tried
        return f"torchcodec finds no FFmpeg shared libraries it can load. {HOW_TO_GET_FFMPEG}"
    return None


@dataclass(frozen=True)
class FrameReader:
    """``read(...)``: io.read_video_frames's contract (uint8 (T, H, W, 3), RGB) with the chosen decoder, on
    ``device``. Frame folders are read with PIL whatever the decoder (then moved to ``device``)."""

    decoder: str = "pyav"
    device: str = "cpu"

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ConfigError(f"data.decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.device not in DECODE_DEVICES:
            raise ConfigError(f"data.decode_device must be one of {', '.join(DECODE_DEVICES)}, got {self.device!r}")
        if self.device == "cuda" and self.decoder != "torchcodec":
            raise ConfigError("data.decode_device=cuda decodes with NVDEC through torchcodec: "
                              "set data.decoder=torchcodec too (pyav decodes on the CPU)")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("data.decode_device=cuda needs a CUDA GPU, and none is visible here "
                              "(data.decode_device=cpu decodes on the CPU)")
        if self.decoder == "torchcodec":
            problem = torchcodec_problem()
            if problem:
                raise ConfigError(f"data.decoder=torchcodec: {problem}")

    def read(self, path: str | os.PathLike | EncodedVideo | bytes, indices: Indices | IndexFn,
             short_side: int | None = None, *, frame_template: str = FRAME_TEMPLATE, start_index: int = START_INDEX,
             num_frames: int | None = None, index_entry: IndexEntry | None = None) -> torch.Tensor:
        if isinstance(path, (bytes, bytearray, memoryview)):
            path = EncodedVideo(path, "<bytes>")
        if not isinstance(path, EncodedVideo):
            path = os.fspath(path)
        if self.decoder == "pyav" or (isinstance(path, str) and os.path.isdir(path)):
            frames = read_video_frames(path, indices, short_side, frame_template=frame_template,
                                       start_index=start_index, num_frames=num_frames, index_entry=index_entry)
            return frames if self.device == "cpu" else frames.to(self.device, non_blocking=True)
        return read_torchcodec(path, indices, short_side, index_entry, self.device)


def frame_mappings(entry: IndexEntry) -> str:
    """An index entry as torchcodec's ``custom_frame_mappings`` JSON (frames in pts order)."""
    pts = entry.pts
    step = int(np.median(np.diff(pts))) if len(pts) > 1 else 1
    durations = np.append(np.diff(pts), step)
    key = np.zeros(len(pts), dtype=np.int64)
    key[entry.key_frames] = 1
    return json.dumps({"frames": [{"pts": int(p), "duration": int(d), "key_frame": int(k)}
                                  for p, d, k in zip(pts.tolist(), durations.tolist(), key.tolist())]})


def read_torchcodec(path: str | EncodedVideo, indices: Indices | IndexFn, short_side: int | None,
                    entry: IndexEntry | None, device: str = "cpu") -> torch.Tensor:
    """RGB uint8 (T, H, W, 3) on ``device`` at the frame indices io.py would give (see the module docstring)."""
    from torchcodec.decoders import VideoDecoder

    if isinstance(path, str) and not os.path.exists(path):
        raise VideoDecodeError(f"video file not found: {path}")
    source = bytes(path.data) if isinstance(path, EncodedVideo) else path  # a streamed shard's sample: its bytes
    where = dict(stream_index=entry.stream, custom_frame_mappings=frame_mappings(entry)) if entry is not None \
        else dict(seek_mode="exact")  # the stream: FFmpeg's pick, as io.best_video_stream
    try:
        decoder = VideoDecoder(source, num_ffmpeg_threads=1, dimension_order="NHWC", device=device, **where)
        idx = _as_index_array(indices, len(decoder))
        wanted, order = np.unique(idx, return_inverse=True)
        frames = decoder.get_frames_at(wanted.tolist()).data
    except (RuntimeError, ValueError) as e:  # torchcodec's errors for unreadable files and streams
        raise VideoDecodeError(f"cannot decode {path} (torchcodec): {str(e).strip().splitlines()[0][:300]}") from e
    if device != "cpu":
        _warn_cpu_fallback(decoder, path)
        frames = frames.to(device)
    frames = frames[torch.from_numpy(order).to(frames.device)]
    size = _short_side_size(frames.shape[1], frames.shape[2], short_side)
    if size != tuple(frames.shape[1:3]):
        frames = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=size, mode="bilinear",
                                                 antialias=True, align_corners=False)
        frames = frames.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return frames


def _warn_cpu_fallback(decoder, path: str) -> None:
    global _fallback_warned
    fallback = decoder.cpu_fallback
    if fallback and not _fallback_warned:
        _fallback_warned = True
        warnings.warn(f"data.decode_device=cuda: NVDEC cannot decode {path} ({fallback}); videos like it are "
                      f"decoded on the CPU and copied to the GPU (warned once)", RuntimeWarning, stacklevel=3)
