"""Tiny real videos written with PyAV (lossless settings, so decoded pixels are exact)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image


def random_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    # smooth-ish content plus per-frame noise: the encoder does real inter prediction
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype(np.int64)
    frames = [np.roll(base, 2 * i, axis=1) + rng.integers(-20, 20, (h, w, 3)) for i in range(n)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def write_video(
    path: Path,
    frames: np.ndarray,
    codec: str = "libx264",
    gop: int = 8,
    fps: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """libx264rgb qp=0 (exact RGB), libx264 yuv444p qp=0 (B-frames on), or VP9 lossless webm.
    `pts` + `time_base` write a variable-frame-rate stream."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.codec_context.thread_count = 1
        if codec == "libvpx-vp9":
            stream.pix_fmt, stream.options = (
                "yuv444p",
                {"lossless": "1", "g": str(gop), "deadline": "realtime", "cpu-used": "8"},
            )
        else:
            stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv444p"
            stream.options = {
                "qp": "0",
                "preset": "ultrafast",
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2",
            }
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def decode_all(path: Path) -> np.ndarray:
    """Reference: every frame, in decode order, with PyAV's plain API."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def write_frame_folder(
    folder: Path, frames: np.ndarray, template: str = "{:05d}.png", start: int = 1
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / template.format(i + start))
    return folder


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    frames = random_frames(40)
    vfr_pts = np.cumsum(np.random.default_rng(3).choice([1, 2, 5], 40)).tolist()  # in 1/30 s: 3 frame rates
    return {
        "mp4_rgb": write_video(d / "rgb.mp4", frames, "libx264rgb", gop=8),
        "mp4_gop5": write_video(d / "gop5.mp4", frames, "libx264", gop=5),
        "mp4_gop1000": write_video(d / "gop1000.mp4", frames, "libx264", gop=1000),
        "webm": write_video(
            d / "vp9.webm", frames[:24, :, :61], "libvpx-vp9", gop=10
        ),  # odd width: yuv420 to_ndarray trap
        "vfr": write_video(
            d / "vfr.mp4", frames, "libx264rgb", gop=6, pts=vfr_pts, time_base=Fraction(1, 30)
        ),
        "short": write_video(d / "short.mp4", frames[:5], "libx264rgb", gop=4),
        "folder": write_frame_folder(d / "frames", frames[:20]),
    }


@pytest.fixture(scope="session")
def source_frames() -> np.ndarray:
    return random_frames(40)


@pytest.fixture(scope="session")
def vt() -> SimpleNamespace:
    """The helpers above as a fixture: `import conftest` in test modules clashes across test dirs."""
    return SimpleNamespace(
        random_frames=random_frames,
        write_video=write_video,
        decode_all=decode_all,
        write_frame_folder=write_frame_folder,
    )
