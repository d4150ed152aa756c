"""Frame-exact decoding against a sequential decode, on real tiny videos written by PyAV."""

from __future__ import annotations

import os
import shutil

import av
import numpy as np
import pytest
import torch
from av.video.codeccontext import VideoCodecContext

from tanet_lightning.data import io
from tanet_lightning.data.io import VideoDecodeError, probe_num_frames, read_video_frames

ENCODED = ["mp4_rgb", "mp4_gop5", "mp4_gop1000", "webm", "vfr"]


def _index_sets(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    sets = [
        np.arange(n),
        np.array([n - 1]),
        np.array([0]),
        np.array([n - 1, 0, n // 2, n // 2]),
        np.arange(0, n, 3),
    ]
    sets += [rng.integers(0, n, rng.integers(1, 9)) for _ in range(12)]  # unsorted, with repeats
    return sets


@pytest.mark.parametrize("name", ENCODED)
def test_frame_exact_against_sequential_decode(vt, videos, name):
    ref = vt.decode_all(videos[name])
    rng = np.random.default_rng(0)
    for idx in _index_sets(len(ref), rng):
        got = read_video_frames(videos[name], idx)
        assert got.dtype == torch.uint8 and got.shape == (len(idx), *ref.shape[1:])
        np.testing.assert_array_equal(got.numpy(), ref[idx], err_msg=f"{name} indices {idx.tolist()}")


def test_lossless_rgb_video_returns_source_pixels(videos, source_frames):
    got = read_video_frames(videos["mp4_rgb"], [3, 17, 39]).numpy()
    np.testing.assert_array_equal(got, source_frames[[3, 17, 39]])


def test_vfr_indices_follow_pts_order_not_fps(vt, videos):
    with av.open(str(videos["vfr"])) as c:
        pts = [f.pts for f in c.decode(video=0)]
    steps = set(np.diff(pts).tolist())
    assert len(steps) >= 3, "fixture must really be variable frame rate"
    # pts * fps would put frame 39 far past index 39; the pts table maps it exactly
    np.testing.assert_array_equal(
        read_video_frames(videos["vfr"], [39]).numpy(), vt.decode_all(videos["vfr"])[[39]]
    )


def test_webm_without_frame_count_in_header(videos):
    with av.open(str(videos["webm"])) as c:
        assert c.streams.video[0].frames == 0  # the header does not tell
    assert probe_num_frames(videos["webm"]) == 24
    seen = []
    out = read_video_frames(videos["webm"], lambda n: seen.append(n) or [n - 1, 0])
    assert seen == [24] and out.shape[0] == 2


def test_frame_folder_same_interface(videos, source_frames):
    folder = videos["folder"]
    got = read_video_frames(folder, [0, 19, 5, 5], frame_template="{:05d}.png", start_index=1)
    np.testing.assert_array_equal(got.numpy(), source_frames[[0, 19, 5, 5]])
    assert probe_num_frames(folder, "{:05d}.png") == 20
    seen = []
    read_video_frames(folder, lambda n: seen.append(n) or [0], frame_template="{:05d}.png")
    assert seen == [20]


def test_short_side_resize_inside_decoder(vt, videos):
    ref = torch.from_numpy(vt.decode_all(videos["mp4_rgb"])[[0, 10]]).permute(0, 3, 1, 2).float()
    got = read_video_frames(videos["mp4_rgb"], [0, 10], short_side=24)
    assert got.shape == (2, 24, 32, 3)  # 48x64 -> short side 24 keeps 3:4
    approx = torch.nn.functional.interpolate(ref, size=(24, 32), mode="bilinear", antialias=True)
    assert (got.permute(0, 3, 1, 2).float() - approx).abs().mean() < 12  # same picture, different filter
    folder = read_video_frames(videos["folder"], [0], short_side=24, frame_template="{:05d}.png")
    assert folder.shape == (1, 24, 32, 3)
    assert read_video_frames(videos["webm"], [0], short_side=24).shape == (1, 24, 30, 3)  # 48x61 -> 24x30.5


def test_errors_are_clear(videos, tmp_path):
    with pytest.raises(VideoDecodeError, match="not found"):
        read_video_frames(tmp_path / "nope.mp4", [0])
    with pytest.raises(IndexError, match="out of range"):
        read_video_frames(videos["mp4_rgb"], [40])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(VideoDecodeError):
        read_video_frames(garbage, [0])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(videos["mp4_gop5"].read_bytes()[: videos["mp4_gop5"].stat().st_size // 2])
    with pytest.raises(VideoDecodeError):
        read_video_frames(truncated, [0])
    broken_folder = tmp_path / "broken"
    shutil.copytree(videos["folder"], broken_folder)
    (broken_folder / "00007.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match="00007"):
        read_video_frames(broken_folder, [6], frame_template="{:05d}.png")


def test_containers_closed_and_memory_flat(videos):
    def fds():
        return len(os.listdir("/proc/self/fd"))

    read_video_frames(videos["mp4_gop5"], [1, 30])  # warm-up (reformatter, codec tables)
    before = fds()
    for i in range(150):
        read_video_frames(videos["mp4_gop5"], [i % 40, (7 * i) % 40])
        with pytest.raises(IndexError):
            read_video_frames(videos["webm"], [99])  # the error path closes too
    assert fds() == before


def _count_decoded(monkeypatch) -> list:
    """pts of every frame the decoder puts out (skipped non-reference frames put out none)."""
    decoded = []
    real_decode = VideoCodecContext.decode

    def counting_decode(self, packet=None):
        frames = real_decode(self, packet)
        decoded.extend(f.pts for f in frames)
        return frames

    monkeypatch.setattr(VideoCodecContext, "decode", counting_decode)
    return decoded


def test_decodes_only_what_the_clip_needs(vt, tmp_path, source_frames, monkeypatch):
    # GOP 4 over 40 frames: a clip of the last two frames must start at the last keyframe, not frame 0
    path = vt.write_video(tmp_path / "g4.mp4", source_frames, "libx264rgb", gop=4)
    decoded = _count_decoded(monkeypatch)
    read_video_frames(path, [38, 39])
    assert 2 <= len(decoded) <= 4 + 3  # one GOP (+ decoder delay), instead of 40
    decoded.clear()
    read_video_frames(path, [1, 37])  # far apart: two runs, not a 37-frame walk
    assert 2 <= len(decoded) <= 2 * (4 + 3)


@pytest.mark.parametrize("name", ENCODED)
def test_frame_exact_when_runs_seek_in_the_file(vt, videos, name, monkeypatch):
    # videos over KEEP_PACKET_BYTES (and indexes from a sidecar) seek in the file instead of the kept packets
    monkeypatch.setattr(io, "KEEP_PACKET_BYTES", 0)
    ref = vt.decode_all(videos[name])
    for idx in _index_sets(len(ref), np.random.default_rng(1))[:8]:
        np.testing.assert_array_equal(read_video_frames(videos[name], idx).numpy(), ref[idx])


def test_one_pass_without_seeks_inside_one_keyframe_interval(vt, videos, monkeypatch):
    # a single-keyframe clip (Something-Something's webm: one keyframe, ~48 frames) is one forward pass: no
    # seek with the kept packets, and none from an unread container when its keyframe is the stream start
    seeks = []
    real_seek = av.container.InputContainer.seek
    monkeypatch.setattr(av.container.InputContainer, "seek",
                        lambda self, *a, **k: seeks.append(a) or real_seek(self, *a, **k))
    ref = vt.decode_all(videos["mp4_gop1000"])
    idx = np.array([3, 11, 19, 27, 35, 39, 0])
    np.testing.assert_array_equal(read_video_frames(videos["mp4_gop1000"], idx).numpy(), ref[idx])
    with io._open_video(str(videos["mp4_gop1000"])) as (c, s):
        full = io._demux(c, s)
    index_only = io._Demuxed(full.pts, full.keys, full.num_frames)  # as from a sidecar: nothing read yet
    with io._open_video(str(videos["mp4_gop1000"])) as (c, s):
        got = io._decode_runs(c, s, index_only, np.unique(idx), (48, 64))
    np.testing.assert_array_equal(np.stack([got[i] for i in idx]), ref[idx])
    assert seeks == []


def test_frames_nobody_wants_skip_the_decoder_when_nothing_refers_to_them(vt, tmp_path, source_frames,
                                                                          monkeypatch):
    # B-frames that are no reference are not decoded unless wanted; the wanted ones are still exact
    path = tmp_path / "b.mp4"
    with av.open(str(path), "w") as out:  # lossy: x264 makes no B-frames when lossless
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"crf": "23", "preset": "fast", "x264-params": "keyint=40:bframes=3:b-pyramid=normal:scenecut=0"}
        for f in source_frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode(None))
    ref = vt.decode_all(path)
    decoded = _count_decoded(monkeypatch)
    for idx in (np.array([39, 1, 2, 21]), np.array([30, 36]), np.arange(40)):
        decoded.clear()
        np.testing.assert_array_equal(read_video_frames(path, idx).numpy(), ref[idx])
    assert len(decoded) == 40  # all wanted: all decoded
    decoded.clear()
    read_video_frames(path, [30, 36])
    assert len(decoded) < 30  # of the 37 frames from the keyframe to frame 36


def test_header_only_open_skips_the_probe_decode_and_falls_back_where_streams_need_it(vt, videos, tmp_path):
    # mp4/webm: the stream parameters come from the header (no pixel format: nothing was decoded at open)
    with io._open_video(str(videos["mp4_gop5"])) as (_, stream):
        assert stream.codec_context.pix_fmt is None and stream.codec_context.width == 64
    # MPEG-PS announces its streams only after probing (PyAV refuses stream options): opened the usual way
    path = tmp_path / "v.mpg"
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg2video", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in vt.random_frames(12):
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode(None))
    with pytest.raises(ValueError, match="stream_options"):
        av.open(str(path), stream_options=io._HEADER_ONLY)
    ref = vt.decode_all(path)
    np.testing.assert_array_equal(read_video_frames(path, [0, 11, 5]).numpy(), ref[[0, 11, 5]])
