"""`python -m tanet_lightning.prepare` on a small Kinetics-like set written here with PyAV: long keyframe
intervals, one truncated file, one file that is not a video. In-process (the Hydra app's function); the
SIGTERM test starts a real process."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

import launcher as launched
from tanet_lightning.base.errors import ConfigError, DataError
from tanet_lightning.data import io
from tanet_lightning.data.datasets import BadFileLog, VideoClipDataset
from tanet_lightning.data.formats import VideoRecord
from tanet_lightning.data.index import INDEX_NAME, VideoIndex, write_index
from tanet_lightning.data.io import probe_num_frames, read_video_frames
from tanet_lightning.data.prepare import index_file, output_size
from tanet_lightning.data.prepare_dataset import FAILED, TMP
from tanet_lightning.data.sampling import ClipSampler
from tanet_lightning.data.settings import ClipSettings
from tanet_lightning.prepare import prepare
from tanet_lightning.train import train
from tinyconf import compose_config

HEADER = "label,youtube_id,time_start,time_end,split\n"
GOOD = {"train": [("jump", f"j{i}") for i in range(3)] + [("run", f"r{i}") for i in range(3)],
        "val": [("jump", "jv"), ("run", "rv")]}
BAD = [("jump", "truncated"), ("run", "notavideo")]  # train rows
KEYS = ["gop=8", "short_side=48", "workers=1", "progress=false"]


def smooth_frames(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """A tinted wave moving 3 px a frame (colour as smooth as in camera footage: yuv420p keeps it), so
    resampling stays pixel-close and neighbouring frames do not."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    waves = np.stack([np.sin(2 * np.pi * (x - 3 * i) / 41 + phase) * np.cos(2 * np.pi * y / 37) for i in range(n)])
    return np.stack([120 + 90 * waves, 110 + 70 * waves, 90 + 50 * waves], axis=-1).astype(np.uint8)


def write_faststart(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode(None))


def k400_like(data_dir: Path, vt, n_frames: int = 40, size: tuple[int, int] = (72, 96)) -> Path:
    """<data_dir>/kinetics400 as conf/data/kinetics400.yaml reads it; every video has one keyframe."""
    ann, videos = data_dir / "kinetics400" / "annotations", data_dir / "kinetics400" / "videos"
    ann.mkdir(parents=True)
    for split, rows in (("train", GOOD["train"] + BAD), ("val", GOOD["val"])):
        (videos / split).mkdir(parents=True)
        lines = [f"{label},{vid},0,10,{split}" for label, vid in rows]
        (ann / ("train.csv" if split == "train" else "validate.csv")).write_text(HEADER + "\n".join(lines) + "\n")
        for i, (_, vid) in enumerate(rows):
            path = videos / split / f"{vid}_000000_000010.mp4"
            if vid == "notavideo":
                path.write_text("this is not a video\n")
                continue
            frames = smooth_frames(n_frames + i, *size, seed=i)
            if vid == "truncated":  # the header first (faststart): it opens, but most frames are gone
                write_faststart(path, frames)
                path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])
                continue
            vt.write_video(path, frames, "libx264", gop=250)
    return data_dir / "kinetics400"


def run_app(app, data_dir: Path, cwd: Path, overrides: list[str]):
    """``app(cfg)`` as ``python -m tanet_lightning.<app>`` would run it from ``cwd`` with TANET_DATA_DIR=data_dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TANET_DATA_DIR", str(data_dir))
        mp.chdir(cwd)
        return app(compose_config(app.__name__, overrides))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, vt):
    base = tmp_path_factory.mktemp("prepare")
    k400 = k400_like(base / "data", vt)
    out = base / "out"
    return k400, out, run_app(prepare, base / "data", base, ["data=kinetics400", f"out={out}", *KEYS])


def test_prepare_writes_videos_lists_sidecar_and_failures(prepared):
    k400, out, done = prepared
    result = done["result"]
    assert len(result.entries) == 8 and result.done_before == 0
    failed = (out / FAILED).read_text().splitlines()
    assert failed[0] == "split\tpath\treason" and len(failed) == 3
    assert sorted(Path(row.split("\t")[1]).name for row in failed[1:]) == \
        ["notavideo_000000_000010.mp4", "truncated_000000_000010.mp4"]
    reasons = dict(row.split("\t")[1:] for row in failed[1:])
    assert all(row.startswith("train\t") for row in failed[1:])
    assert "of the 46 frames its header declares are there (truncated)" in reasons[
        str(k400 / "videos" / "train" / "truncated_000000_000010.mp4")]
    assert "cannot open video" in reasons[str(k400 / "videos" / "train" / "notavideo_000000_000010.mp4")]
    train = (out / "annotations" / "train.csv").read_text().splitlines()
    assert train[0] == HEADER.strip() and len(train) == 7
    assert not any("truncated" in row or "notavideo" in row for row in train)
    assert (out / "annotations" / "validate.csv").read_text() == (k400 / "annotations" / "validate.csv").read_text()
    assert done["overrides"] == [f"data.root={out}", f"data.train_ann={out}/annotations/train.csv",
                                 f"data.val_ann={out}/annotations/validate.csv"]
    assert not (out / TMP).exists()

    index = VideoIndex.load(out)
    assert len(index) == 8 and (out / INDEX_NAME).is_file()
    for rel in index.paths:
        entry, src = index.lookup(out / rel), k400 / "videos" / rel
        assert entry is not None and entry.num_frames == probe_num_frames(src) == probe_num_frames(out / rel)
        assert (entry.height, entry.width) == (48, 64) == output_size(72, 96, 48)
        key_frames = np.searchsorted(entry.pts, entry.keys)
        assert key_frames[0] == 0 and np.diff(np.append(key_frames, entry.num_frames)).max() <= 8
        with av.open(str(out / rel)) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and s.format.name == "yuv420p" and not c.streams.audio


def test_prepare_refuses_what_cannot_work_before_writing(prepared, tmp_path):
    k400, _, _ = prepared
    with pytest.raises(ConfigError, match=r"out is required .*give out=DIR \(the folder the prepared copy"):
        run_app(prepare, k400.parent, tmp_path, ["data=kinetics400"])
    with pytest.raises(ConfigError, match=r"gop=0 must be >= 1"):
        run_app(prepare, k400.parent, tmp_path, ["data=kinetics400", "out=x", "gop=0"])
    with pytest.raises(DataError, match=r"out=.*/videos/copy and the dataset it prepares overlap: out=.*/videos/copy "
                                        r"is inside data.root=.*/videos"):
        run_app(prepare, k400.parent, tmp_path, ["data=kinetics400", f"out={k400 / 'videos' / 'copy'}", *KEYS])
    assert not (k400 / "videos" / "copy").exists() and not (tmp_path / "x").exists()


def test_sampled_clips_are_pixel_close_to_the_source(prepared):
    k400, out, _ = prepared
    index = VideoIndex.load(out)
    rng = np.random.default_rng(0)
    for rel in index.paths:
        n = probe_num_frames(out / rel)
        for sampler in (ClipSampler("dense", 8, 32), ClipSampler("uniform", 8)):
            idx = np.concatenate([sampler.train(n, rng), sampler.val(n)])
            src = read_video_frames(k400 / "videos" / rel, idx, short_side=48).numpy().astype(np.int16)
            got = read_video_frames(out / rel, idx, short_side=48, index_entry=index.lookup(out / rel)).numpy()
            error = np.abs(got.astype(np.int16) - src).mean(axis=(1, 2, 3))
            other = read_video_frames(k400 / "videos" / rel, np.minimum(idx + 1, n - 1), short_side=48).numpy()
            assert error.max() < 6, (rel, error)  # measured ~3.8: yuv420p, x264 crf 23 at 64x48
            # ... and the next frame is far (~13): the same frames, not merely similar ones
            assert np.abs(got.astype(np.int16) - other)[idx < n - 1].mean() > 2.5 * error.mean()


def test_the_loader_uses_the_sidecar_and_demuxes_a_stale_file(prepared, tmp_path, monkeypatch):
    _, out, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # copy2 keeps mtimes: the sidecar still describes the copies
    index = VideoIndex.load(copy)
    demuxed = []
    real = io._demux
    monkeypatch.setattr(io, "_demux", lambda c, s, *a: demuxed.append(1) or real(c, s, *a))
    records = [VideoRecord(str(copy / rel), 0) for rel in index.paths]
    settings = ClipSettings(num_frames=4, short_side=48, crop_size=48)
    data = VideoClipDataset(records, "val", BadFileLog(tmp_path / "bad.tsv", 0.0, 8), settings, index=index)
    first = data[0]["video"]
    assert demuxed == [] and all(data[i]["valid"] for i in range(len(records)))

    os.utime(records[0].path, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: the entry is stale
    assert index.lookup(records[0].path) is None
    assert np.array_equal(data[0]["video"], first) and demuxed == [1]
    assert VideoIndex.load(tmp_path) is None  # no sidecar: the loader demuxes as before


def test_an_index_of_any_timestamps_reads_as_a_demux(videos, tmp_path):
    """Variable frame rate and B-frames: the sidecar keeps the pts table; reading with it is frame-exact."""
    entries = {}
    for name in ("vfr", "mp4_gop5", "webm"):
        shutil.copy2(videos[name], tmp_path / videos[name].name)
        entries[videos[name].name] = index_file(tmp_path / videos[name].name)
    assert entries["vfr.mp4"].pts_step == 0 and entries["gop5.mp4"].pts_step > 0
    write_index(tmp_path, entries)
    index = VideoIndex.load(tmp_path)
    for rel, want in entries.items():
        got = index.lookup(tmp_path / rel)
        assert np.array_equal(got.pts, want.pts) and np.array_equal(got.keys, want.keys)
        assert (got.num_frames, got.fps, got.time_base, got.width) == (want.num_frames, want.fps, want.time_base,
                                                                       want.width)
        idx = np.random.default_rng(0).integers(0, got.num_frames, 12)
        assert np.array_equal(read_video_frames(tmp_path / rel, idx, index_entry=got),
                              read_video_frames(tmp_path / rel, idx))


def test_a_second_run_keeps_finished_videos_and_redoes_missing_or_truncated(prepared, tmp_path):
    k400, out, _ = prepared
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    rels = VideoIndex.load(copy).paths
    (copy / rels[0]).unlink()
    data = (copy / rels[1]).read_bytes()
    (copy / rels[1]).write_bytes(data[: len(data) // 3])  # as a copy tool would leave it
    before = {rel: os.stat(copy / rel).st_mtime_ns for rel in rels[2:]}
    result = run_app(prepare, k400.parent, tmp_path, ["data=kinetics400", f"out={copy}", *KEYS])["result"]
    assert result.done_before == 6 and len(result.entries) == 8 and len(result.failed) == 2
    assert {rel: os.stat(copy / rel).st_mtime_ns for rel in rels[2:]} == before  # not re-encoded
    assert probe_num_frames(copy / rels[1]) == VideoIndex.load(copy).lookup(copy / rels[1]).num_frames


# a training run (~2 s CPU): `make test` only, where README's `prepare` section also trains on a prepared copy
@pytest.mark.heavy
def test_training_on_the_prepared_copy_runs(prepared, tmp_path):
    k400, out, done = prepared
    metrics, objects = run_app(train, k400.parent, tmp_path, [
        "data=kinetics400", *done["overrides"], "data.num_frames=4", "data.dense_window=16", "data.short_side=32",
        "data.crop_size=32", "data.test_crop_size=32", "data.test_views=1x1", "data.batch_size=2",
        "data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "callbacks.model_summary=null"])
    assert "test/top1" in metrics and objects["datamodule"].video_index is not None
    assert objects["datamodule"].bad_files() == []


@pytest.mark.process
def test_sigterm_stops_cleanly_and_a_rerun_finishes(tmp_path, vt, launcher):
    """Real workers: a stopped run leaves only whole files under final names; the rerun keeps them."""
    src = tmp_path / "videos"
    src.mkdir()
    # long enough (~0.1 s each per worker) that the signal lands while videos are still being prepared
    one = vt.write_video(src / "v00.mp4", smooth_frames(240, 180, 240, 0), "libx264", gop=250)
    for i in range(1, 12):
        shutil.copy(one, src / f"v{i:02d}.mp4")
    (tmp_path / "train.txt").write_text("".join(f"v{i:02d}.mp4 {i % 2}\n" for i in range(12)))
    (tmp_path / "val.txt").write_text("v00.mp4 0\nv01.mp4 1\n")
    out = tmp_path / "out"
    keys = ["data=video_list", f"data.root={src}", f"data.train_ann={tmp_path / 'train.txt'}",
            f"data.val_ann={tmp_path / 'val.txt'}", f"out={out}", "workers=2", "gop=30", "progress=false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TANET_DATA_DIR": str(tmp_path)}
    # a `python -m` process, forked from the preloaded launcher (tests/launcher.py)
    proc = launched.popen(launcher, [sys.executable, "-m", "tanet_lightning.prepare", *keys], tmp_path, env)
    deadline = time.time() + 120
    while len(list(out.glob("v*.mp4"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the finished videos' results reach the parent
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output[-3000:]
    assert "stopped by SIGTERM" in output and not (out / TMP).exists()
    finished = sorted(p.name for p in out.glob("v*.mp4"))
    assert len(finished) < 12, output[-3000:]
    assert all(probe_num_frames(out / name) == 240 for name in finished)  # whole files only, under final names
    kept = VideoIndex.load(out).paths  # the sidecar written on the way out: the resume point
    assert kept and set(kept) <= set(finished)
    before = {name: os.stat(out / name).st_mtime_ns for name in kept}

    result = run_app(prepare, tmp_path, tmp_path, keys)["result"]
    assert result.done_before == len(kept) and len(result.entries) == 12 and not result.failed
    assert {name: os.stat(out / name).st_mtime_ns for name in kept} == before  # not re-encoded
