"""Will the loader be the bottleneck? A look at the keyframe spacing of a few training videos, at setup.

A clip costs what its file makes the decoder do, not the 8 frames it keeps: decoding starts at the
keyframe before the clip's first frame. YouTube-style files (Kinetics) carry a keyframe every ~250
frames, so a dense 8x8 clip decodes ~180 frames and a core loads ~10 clips/s; with a keyframe every 30
frames it is 2-3x that. The probe demuxes (no decoding) the first packets of a few training videos and,
when their keyframes are far apart, prints the ``prepare`` command that re-encodes the dataset.
"""

from __future__ import annotations

import os
import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .io import VideoDecodeError, _open_video

PROBE_VIDEOS = 4  # spread over the training list
PROBE_PACKETS = 1000  # per video: enough to see a 250-frame keyframe spacing a few times over
LONG_SPACING = 60  # frames per keyframe above which the hint is printed
PREPARED_GOP = 30  # what the hint asks prepare for (its default)

# the data config of each format, for commands composed outside Hydra (conf/data/<name>.yaml)
FORMAT_CONFIGS = {"kinetics_csv": "kinetics400", "sthv1_csv": "sthv1", "sthv2_json": "sthv2",
                  "video_list": "video_list", "rawframes": "video_list", "video_folder": "video_folder",
                  "synthetic": "synthetic"}


@dataclass(frozen=True)
class SpacingProbe:
    """Keyframe spacing of the probed videos: frames per keyframe, median over videos."""

    videos: int
    frames_per_keyframe: float
    size: tuple[int, int]  # (width, height) of the first probed video

    @property
    def long(self) -> bool:
        return self.frames_per_keyframe > LONG_SPACING


def frames_per_keyframe(path: str, max_packets: int = PROBE_PACKETS) -> tuple[float, tuple[int, int]]:
    """(frames per keyframe among the first `max_packets` packets, (width, height)); demux only."""
    frames = keys = 0
    with _open_video(path) as (container, stream):
        size = (stream.codec_context.width, stream.codec_context.height)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            frames += 1
            keys += bool(packet.is_keyframe)
            if frames >= max_packets:
                break
    return frames / max(keys, 1), size


def probe_spacing(paths: Sequence[str], videos: int = PROBE_VIDEOS) -> SpacingProbe | None:
    """Probe up to `videos` encoded videos spread over `paths` (frame folders and unreadable files are
    passed over); None when none could be read."""
    files = [p for p in paths if not os.path.isdir(p)]
    if not files:
        return None
    step = max(1, len(files) // videos)
    spacing, size = [], None
    for path in files[::step][:videos]:
        try:
            s, wh = frames_per_keyframe(path)
        except VideoDecodeError:  # the loader reports unreadable files itself
            continue
        spacing.append(s)
        size = size or wh
    return SpacingProbe(len(spacing), statistics.median(spacing), size) if spacing else None


def prepare_command(data_args: Sequence[str], root: str) -> str:
    """The `prepare` command for the dataset that `data_args` (data=NAME and data.* keys) describe."""
    out = f"{str(root).rstrip(os.sep)}_prepared"
    args = [a for a in data_args if not a.lstrip("+").startswith("data.root=")]
    return " ".join(["python -m tanet_lightning.prepare", *map(shlex.quote, args), shlex.quote(f"data.root={root}"),
                     shlex.quote(f"out={out}"), f"gop={PREPARED_GOP}"])


def spacing_message(probe: SpacingProbe, command: str) -> str:
    w, h = probe.size
    line = (f"loader probe: {probe.videos} training videos ({w}x{h}) have a keyframe every "
            f"{probe.frames_per_keyframe:.0f} frames (median)")
    if not probe.long:
        return line
    return (f"{line}. A clip decodes from the keyframe before its first frame, so with keyframes this far "
            f"apart the loader, not the model, sets the pace (a dense 8x8 clip decodes ~100-200 frames to "
            f"keep 8). A copy with a keyframe every {PREPARED_GOP} frames loads 2-3x faster:\n"
            f"  {command}\nthen train with the data.* keys it prints.")
