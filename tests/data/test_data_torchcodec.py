"""data.decoder=torchcodec reads the frames data.decoder=pyav reads: same frame counts for the samplers, same
frame indices, bit-identical pixels on the same FFmpeg (PyAV's, linked by data/ffmpeg_libs.py), the same
bad-file errors; the main job trains and tests to the same metrics. torchcodec runs in child processes
started with LD_LIBRARY_PATH (tests/data/torchcodec_child.py); decode_device=cuda tests are marked gpu."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import launcher as launched
from tanet_lightning.base.errors import ConfigError
from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.data.decoders import FrameReader, torchcodec_problem
from tanet_lightning.data.ffmpeg_libs import pyav_ffmpeg_dir
from tinyconf import TINY_RUN, TINY_SYNTHETIC

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
NEEDS_TORCHCODEC = pytest.mark.skipif(importlib.util.find_spec("torchcodec") is None,
                                      reason="torchcodec is not installed (pip install -e .[torchcodec])")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
RESIZED_MEAN, RESIZED_MAX = 0.5, 12  # torch's antialiased bilinear vs swscale's (levels of 0-255)


@pytest.fixture(scope="session")
def ffmpeg_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process whose torchcodec loads PyAV's FFmpeg."""
    folder = pyav_ffmpeg_dir(tmp_path_factory.mktemp("ffmpeg_libs"))
    if folder is None:
        pytest.skip("PyAV bundles no FFmpeg libraries here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANET_")}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("LD_LIBRARY_PATH")) if p)
    return env


def run_child(spec: dict, tmp_path: Path, env: dict[str, str]) -> dict:
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(HERE / "torchcodec_child.py"), str(tmp_path / "spec.json"), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def cases(videos, tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:
    """The frame-exactness fixtures (tests/data/conftest.py), a 2-stream file, and unreadable files."""
    from test_data_streams import write_two_streams

    d = tmp_path_factory.mktemp("torchcodec")
    good = {k: str(videos[k]) for k in ("mp4_rgb", "mp4_gop5", "mp4_gop1000", "webm", "vfr", "short")}
    good["two_streams"] = str(write_two_streams(d / "two.mp4"))
    data = Path(videos["mp4_gop5"]).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (d / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    bad = {"truncated": str(d / "truncated.mp4"), "garbage": str(d / "garbage.mp4"), "missing": str(d / "none.mp4")}
    return good, bad


@pytest.mark.heavy  # a fresh interpreter per decoder (torchcodec_child.py)
@NEEDS_TORCHCODEC
def test_torchcodec_frames_equal_pyav_frames(cases, tmp_path, ffmpeg_env):
    good, bad = cases
    result = run_child({"videos": good, "bad": bad, "device": "cpu"}, tmp_path, ffmpeg_env)
    for name, r in result["videos"].items():
        assert all(a == b for a, b in r["seen"]), f"{name}: the samplers saw other frame counts {r['seen']}"
        assert r["max_diff"] == 0, f"{name}: torchcodec's frames differ from PyAV's by up to {r['max_diff']}"
        assert r["bytes_max_diff"] == 0, f"{name}: read from its bytes (a shard's sample), {r['bytes_max_diff']}"
        assert r["resized_mean"] <= RESIZED_MEAN and r["resized_max"] <= RESIZED_MAX, (name, r)
    assert result["videos"]["two_streams"]["seen"][0] == [20, 20]  # the large stream, as FFmpeg picks
    for name, (kind, message) in result["bad"].items():  # what datasets.py counts as an unreadable file
        assert kind == "VideoDecodeError", (name, kind, message)


@pytest.mark.slow  # two tiny training runs and two evaluations in fresh processes: ~80 s on 2 loaded cores
@NEEDS_TORCHCODEC
def test_main_job_trains_and_evaluates_the_same_with_torchcodec(tmp_path, data_dir, ffmpeg_env, launcher):
    """The tiny main job, deterministic, once per decoder: the same metrics to the last digit (same frames);
    then `eval` of one checkpoint with each decoder: the same scores, bit for bit."""
    base = [sys.executable, "-m", "tanet_lightning.train", *TINY_SYNTHETIC, *TINY_RUN, "trainer.deterministic=true"]
    env = {**ffmpeg_env, "TANET_DATA_DIR": str(data_dir), "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    metrics = {}
    for decoder in ("pyav", "torchcodec"):
        cwd = tmp_path / decoder
        cwd.mkdir()
        cmd = [*base, f"data.decoder={decoder}"]
        # pyav from the preloaded launcher; torchcodec in a fresh process (LD_LIBRARY_PATH is read at start)
        proc = launched.run(launcher, cmd, cwd, env) if decoder == "pyav" else \
            subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        (path,) = cwd.glob("logs/train/runs/*/metrics.json")
        metrics[decoder] = json.loads(path.read_text())
    for key in ("test/top1", "test/top5", "val/top1", "val/loss", "train/loss_epoch"):
        assert metrics["torchcodec"][key] == metrics["pyav"][key], key
    (ckpt,) = (tmp_path / "pyav").glob("logs/train/runs/*/checkpoints/last.ckpt")
    scores = {}
    for decoder in ("pyav", "torchcodec"):
        cwd = tmp_path / f"eval_{decoder}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", "tanet_lightning.eval", f"ckpt_path={ckpt}", *TINY_SYNTHETIC,
               "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", f"data.decoder={decoder}"]
        proc = launched.run(launcher, cmd, cwd, env) if decoder == "pyav" else \
            subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        (path,) = cwd.glob("logs/eval/runs/*/scores.npz")
        with np.load(path) as z:
            scores[decoder] = {k: z[k] for k in z.files}
    assert scores["pyav"].keys() == scores["torchcodec"].keys() and "scores" in scores["pyav"]
    for key, value in scores["pyav"].items():
        assert np.array_equal(scores["torchcodec"][key], value), key


@pytest.mark.heavy
@NEEDS_TORCHCODEC
def test_missing_ffmpeg_libraries_say_how_to_get_them(tmp_path, data_dir, launcher):
    if torchcodec_problem() is None:
        pytest.skip("torchcodec finds FFmpeg libraries on this machine without help")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANET_")}
    env.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled")
    proc = launched.run(launcher, [sys.executable, "-m", "tanet_lightning.train", *TINY_SYNTHETIC, *TINY_RUN,
                                   "data.decoder=torchcodec"], tmp_path, env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    assert "data.decoder=torchcodec" in log and "python -m tanet_lightning.data.ffmpeg_libs" in log
    assert "LD_LIBRARY_PATH" in log and "Traceback" not in log


def test_ffmpeg_libs_links_pyavs_libraries_under_plain_names(tmp_path):
    folder = pyav_ffmpeg_dir(tmp_path)
    if folder is None:
        pytest.skip("PyAV bundles no FFmpeg libraries here")
    major = av.library_versions["libavcodec"][0]
    assert (folder / f"libavcodec.so.{major}").resolve().is_file()
    assert pyav_ffmpeg_dir(tmp_path) == folder  # a second call keeps the links


@pytest.mark.parametrize("kwargs, words", [
    (dict(decoder="ffmpeg"), "data.decoder must be one of pyav, torchcodec"),
    (dict(device="gpu"), "data.decode_device must be one of cpu, cuda"),
    (dict(device="cuda"), "set data.decoder=torchcodec too"),
])
def test_decoder_settings_are_checked(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        FrameReader(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_cuda_decoding_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        FrameReader("torchcodec", "cuda")


def test_the_data_config_keys_reach_the_datamodule(make_cfg):
    from hydra.utils import instantiate

    from tanet_lightning.config import schema

    dm = instantiate(make_cfg(["data.decoder=pyav", "data.decode_device=cpu"]).data)
    assert isinstance(dm, VideoDataModule) and dm.frames == FrameReader("pyav", "cpu")
    with pytest.raises(ConfigError, match="data.decoder"):
        schema.validate(make_cfg(["data.decoder=decord"]), "train")


# ----------------------------------------------------------------------------------------------------
# decode_device=cuda (NVDEC)


def write_ffv1(path: Path, n: int = 12) -> Path:
    """FFV1 (lossless, intra-only) in Matroska: a codec NVDEC does not decode."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


@pytest.mark.gpu
@CUDA
@NEEDS_TORCHCODEC
def test_nvdec_frames_land_on_the_gpu_close_to_pyavs(cases, tmp_path, ffmpeg_env):
    good, _ = cases
    good = {k: good[k] for k in ("mp4_gop5", "mp4_gop1000", "two_streams")}  # yuv420p H.264: NVDEC's
    result = run_child({"videos": good, "device": "cuda"}, tmp_path, ffmpeg_env)
    for name, r in result["videos"].items():
        assert r["device"].startswith("cuda"), (name, r["device"])
        assert all(a == b for a, b in r["seen"]), (name, r["seen"])
        # NVDEC's YUV->RGB conversion is its own (not swscale's): close, not bit-identical
        assert r["mean_diff"] <= 2.0, (name, r)
    assert result["warnings"] == []


@pytest.mark.gpu
@CUDA
@NEEDS_TORCHCODEC
def test_a_codec_nvdec_lacks_falls_back_to_the_cpu_with_one_warning(tmp_path, ffmpeg_env):
    a, b = write_ffv1(tmp_path / "a.mkv"), write_ffv1(tmp_path / "b.mkv", 10)
    result = run_child({"videos": {"a": str(a), "b": str(b)}, "device": "cuda"}, tmp_path, ffmpeg_env)
    for name, r in result["videos"].items():
        assert r["device"].startswith("cuda") and r["max_diff"] == 0, (name, r)  # decoded by FFmpeg on the CPU
    assert len(result["warnings"]) == 1 and "NVDEC cannot decode" in result["warnings"][0]


@pytest.mark.gpu
@CUDA
@NEEDS_TORCHCODEC
def test_cuda_decoding_trains_the_main_job(tmp_path, data_dir, ffmpeg_env):
    env = {**ffmpeg_env, "TANET_DATA_DIR": str(data_dir), "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "tanet_lightning.train", *TINY_SYNTHETIC, "trainer.max_epochs=1",
           "trainer.accelerator=gpu", "trainer.enable_progress_bar=false", "callbacks.model_summary=null",
           "data.decoder=torchcodec", "data.decode_device=cuda", "data.num_workers=0"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert list(tmp_path.glob("logs/train/runs/*/metrics.json"))
