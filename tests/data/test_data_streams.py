"""A file with several video streams is read from the one FFmpeg picks (av_find_best_stream), as torchcodec
and the ffmpeg CLI do, never blindly from index 0: by the loader, every sampler, the index and prepare."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tanet_lightning.data.index import VideoIndex, write_index
from tanet_lightning.data.io import probe_num_frames, read_video_frames, video_stream
from tanet_lightning.data.prepare import MAX_MEAN_ERROR, index_file, prepare_video
from tanet_lightning.data.sampling import ClipSampler

SMALL = (24, 32, 12)  # height, width, frames: stream 0, no default disposition
LARGE = (72, 96, 20)  # stream 1, the default stream: FFmpeg's pick


def _frames(h: int, w: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype(np.int64)
    return np.clip(np.stack([np.roll(base, 2 * i, axis=1) + rng.integers(-4, 4, (h, w, 3)) for i in range(n)]),
                   0, 255).astype(np.uint8)


def write_two_streams(path: Path) -> Path:
    """A small stream first and a large one second, the large one marked default (lossless yuv444p)."""
    content = {0: _frames(*SMALL, seed=1), 1: _frames(*LARGE, seed=2)}
    with av.open(str(path), "w") as out:
        streams = []
        for i, frames in content.items():
            s = out.add_stream("libx264", rate=25)
            s.height, s.width, s.pix_fmt = frames.shape[1], frames.shape[2], "yuv444p"
            s.options = {"qp": "0", "preset": "ultrafast", "x264-params": "keyint=5:min-keyint=5:scenecut=0:bframes=2"}
            s.disposition = av.stream.Disposition.default if i == 1 else av.stream.Disposition(0)
            streams.append(s)
        for f in range(max(len(c) for c in content.values())):
            for i, s in enumerate(streams):
                if f < len(content[i]):
                    frame = av.VideoFrame.from_ndarray(content[i][f], format="rgb24")
                    frame.pts = f
                    out.mux(s.encode(frame))
        for s in streams:
            out.mux(s.encode(None))
    return path


def decode_stream(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams[index])])


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    return write_two_streams(tmp_path_factory.mktemp("streams") / "two.mp4")


def test_ffmpeg_picks_the_large_second_stream(two):
    with av.open(str(two)) as c:  # a probed open, as torchcodec and the ffmpeg CLI make
        assert len(c.streams.video) == 2 and c.streams.best("video").index == 1
    assert video_stream(two) == 1
    assert probe_num_frames(two) == LARGE[2]


@pytest.mark.parametrize("kind", ["dense", "uniform"])
def test_every_sampler_reads_the_picked_stream(two, kind):
    ref = decode_stream(two, 1)
    assert ref.shape == (LARGE[2], *LARGE[:2], 3)
    sampler = ClipSampler(kind, 4, window=8)
    for name, fn in [("train", lambda n: sampler.train(n, np.random.default_rng(7))), ("val", sampler.val),
                     ("test", lambda n: sampler.test(n, 3).reshape(-1))]:
        seen = []
        got = read_video_frames(two, lambda n: seen.append(n) or fn(n)).numpy()  # noqa: B023
        assert seen == [LARGE[2]], f"{kind} {name}: the sampler saw {seen} frames"
        np.testing.assert_array_equal(got, ref[fn(LARGE[2])], err_msg=f"{kind} {name}")


def test_the_index_records_the_stream_and_reads_it(two, tmp_path):
    entry = index_file(two)
    assert entry.stream == 1 and entry.num_frames == LARGE[2] and (entry.height, entry.width) == LARGE[:2]
    write_index(two.parent, {two.name: entry})
    loaded = VideoIndex.load(two.parent).lookup(two)
    assert loaded is not None and loaded.stream == 1
    idx = [0, 7, 19, 3]
    np.testing.assert_array_equal(read_video_frames(two, idx, index_entry=loaded).numpy(), decode_stream(two, 1)[idx])


def test_a_version_1_sidecar_still_reads(two, tmp_path):
    entry = index_file(two)
    write_index(tmp_path, {"two.mp4": entry})
    with np.load(tmp_path / "video_index.npz") as z:
        cols = {k: z[k] for k in z.files if k not in ("stream", "source_stream")}
    cols["version"] = np.int64(1)
    np.savez(tmp_path / "video_index.npz", **cols)
    old = VideoIndex.load(tmp_path).entry("two.mp4")
    assert (old.stream, old.source_stream, old.num_frames) == (0, -1, LARGE[2])


def test_prepare_keeps_the_picked_stream(two, tmp_path):
    entry = prepare_video(two, tmp_path / "two.mp4").entry
    assert (entry.source_stream, entry.stream) == (1, 0)
    with av.open(str(tmp_path / "two.mp4")) as c:
        assert len(c.streams.video) == 1
    assert entry.num_frames == LARGE[2] and (entry.height, entry.width) == LARGE[:2]
    got = read_video_frames(tmp_path / "two.mp4", range(LARGE[2]), index_entry=entry).numpy().astype(np.int16)
    ref = decode_stream(two, 1).astype(np.int16)
    assert np.abs(got - ref).mean() < MAX_MEAN_ERROR  # the large stream's frames, lossily re-encoded (4:2:0)
    assert np.abs(got - ref).mean() < np.abs(got - np.roll(ref, 1, axis=0)).mean()  # frame i is frame i
