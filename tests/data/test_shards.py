"""A prepared dataset as LitData shards, read from a folder and from an S3 server on the loopback address:
the same clips, fingerprints, training and evaluation as the prepared files."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import shard_probe
import torch

import launcher as launched
from tanet_lightning.data import shards
from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.eval import evaluate
from tanet_lightning.prepare import prepare
from tanet_lightning.train import train
from tinyconf import TINY_RUN, TINY_SPEC, TINY_SYNTHETIC, compose_config

pytestmark = pytest.mark.heavy

CLIP = dict(synthetic=dataclasses.asdict(TINY_SPEC), num_frames=4, short_side=32, crop_size=32, test_crop_size=32,
            num_workers=0, batch_size=8, test_views="2x3")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The tiny synthetic set prepared to files (``files``) and those files packed into shards (``shards``)."""
    base = tmp_path_factory.mktemp("shards")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("TANET_DATA_DIR", str(base / "data"))
        prepare(compose_config("prepare", [*TINY_SYNTHETIC, f"out={base / 'files'}", "progress=false"]))
    files = VideoDataModule(data_dir=base / "data", format="synthetic", root=str(base / "files"), **CLIP)
    shards.write_dataset(files, base / "shards", chunk_bytes="16kB")  # several chunks per split
    return base, files


def _items(dm: VideoDataModule, split: str, seed: int = 0) -> list[dict]:
    dm.setup()
    torch.manual_seed(seed)
    return [dm.datasets[split][i] for i in range(len(dm.datasets[split]))]


def test_every_sampler_gives_the_files_clips_from_the_shards(prepared):
    base, files = prepared
    streamed = VideoDataModule(data_dir=base / "data", format="synthetic", root=str(base / "shards"), **CLIP)
    assert len(list((base / "shards" / "train").glob("chunk-*.bin"))) > 1
    assert streamed.class_names == files.class_names and streamed.flip_label_map == files.flip_label_map
    for split in ("train", "val", "test"):  # random clips + crops + flips, centre clips, every test view
        a, b = _items(files, split), _items(streamed, split)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert torch.equal(x["video"], y["video"]), split
            assert (x["label"], x["video_idx"], x["view_idx"]) == (y["label"], y["video_idx"], y["view_idx"])
    fp = {s: streamed.fingerprint(s).to_dict() for s in ("train", "val", "test")}
    assert fp == {s: files.fingerprint(s).to_dict() for s in ("train", "val", "test")}
    assert json.loads((base / "shards" / shards.FINGERPRINTS).read_text()) == fp


def test_an_interrupted_shard_write_leaves_no_dataset(prepared, monkeypatch):
    base, files = prepared
    out = base / "broken"

    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(shards, "write_manifest", fail)
    with pytest.raises(KeyboardInterrupt):
        shards.write_dataset(files, out, chunk_bytes="16kB")
    assert shards.manifest(str(out)) is None  # no manifest: not a shard location, read as files would be
    assert not list(out.glob(".*.tmp"))  # no temporary split folder left (base/files.temp_name)


def _scores(out: Path) -> dict:
    with np.load(out / "scores.npz") as f:
        return {k: f[k] for k in f.files}


def test_train_on_shards_and_eval_equals_eval_of_the_files(prepared, make_cfg):
    base, _ = prepared
    metrics, objects = train(make_cfg(["trainer.max_epochs=2", "test=false", f"data.root={base / 'shards'}"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    runs = {}
    for name, root in (("files", base / "files"), ("shards", base / "shards")):
        cfg = make_cfg([f"ckpt_path={ckpt}", f"data.root={root}", "data.test_views=2x3"], name="eval")
        m, _ = evaluate(cfg)
        runs[name] = (m, _scores(Path(cfg.paths.output_dir)))
    (mf, sf), (ms, ss) = runs["files"], runs["shards"]
    assert mf["test/top1"] == ms["test/top1"] and mf["test/top5"] == ms["test/top5"]
    for key in ("scores", "labels", "video_idx"):
        assert np.array_equal(sf[key], ss[key]), key


# ----------------------------------------------------------------------------------------------------
# an S3 object store on the loopback address (moto's server: a real HTTP S3 API, not a mock of the client)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server in a process of its own, so that ``stop()`` ends it for every client: a server thread
    in this process would leave its listening socket open in the processes forked from here (DataLoader
    workers), where a request to a stopped server then hangs in the kernel's backlog instead of failing."""

    def __init__(self, port: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start (exit {self.proc.poll()})") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture
def s3(monkeypatch):
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    server = S3Server(port)
    url = f"http://127.0.0.1:{port}"
    secret = "tanet-test-secret-0123456789"
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret,
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="videos")
    yield server, secret
    server.stop()


def test_eval_streamed_from_s3_equals_the_files_and_a_stopped_store_is_an_error(prepared, make_cfg, s3, tmp_path):
    server, secret = s3
    base, _ = prepared
    assert shards.upload(base / "shards", "s3://videos/tiny") > 4
    metrics, objects = train(make_cfg(["trainer.max_epochs=1", "test=false", f"data.root={base / 'files'}"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    runs = {}
    for name, root in (("files", str(base / "files")), ("s3", "s3://videos/tiny")):
        cfg = make_cfg([f"ckpt_path={ckpt}", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}"],
                       name="eval")
        m, _ = evaluate(cfg)
        runs[name] = (m, _scores(Path(cfg.paths.output_dir)), Path(cfg.paths.output_dir))
    assert runs["files"][0]["test/top1"] == runs["s3"][0]["test/top1"]
    assert np.array_equal(runs["files"][1]["scores"], runs["s3"][1]["scores"])
    # credentials come from the environment and stay there
    for path in runs["s3"][2].rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    server.stop()
    with pytest.raises(shards.ShardError, match=r"s3://videos/other"):
        VideoDataModule(data_dir=base / "data", format="synthetic", root="s3://videos/other", **CLIP)


@pytest.mark.slow  # two spawned processes (trainer=ddp_cpu)
def test_eval_under_ddp_from_shards_scores_every_video_once_as_one_process_from_files(prepared, make_cfg):
    base, _ = prepared
    metrics, objects = train(make_cfg(["trainer.max_epochs=1", "test=false", f"data.root={base / 'files'}"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    runs = {}
    for name, extra in (("files", [f"data.root={base / 'files'}"]),
                        ("shards-ddp", [f"data.root={base / 'shards'}", "trainer=ddp_cpu", "data.test_batch_size=5"])):
        cfg = make_cfg([f"ckpt_path={ckpt}", "data.test_views=1x3", *extra], name="eval")
        m, _ = evaluate(cfg)
        runs[name] = (m, _scores(Path(cfg.paths.output_dir)))
    (mf, sf), (md, sd) = runs["files"], runs["shards-ddp"]
    assert md["test/num_videos"] == mf["test/num_videos"] == 8  # 24 views over 2 ranks: padding dropped
    assert mf["test/top1"] == md["test/top1"] and mf["test/top5"] == md["test/top5"]
    order_f, order_d = np.argsort(sf["video_idx"]), np.argsort(sd["video_idx"])
    assert np.array_equal(sf["video_idx"][order_f], sd["video_idx"][order_d])
    np.testing.assert_allclose(sf["scores"][order_f], sd["scores"][order_d], rtol=0, atol=1e-6)


def test_a_store_stopped_mid_epoch_fails_the_run_naming_the_url(prepared, make_cfg, s3, tmp_path, monkeypatch):
    """The server goes away after the first training batch (shard_probe.StopStore); the cache is empty and
    LitData's random access reads each sample's bytes from the store, so the loader worker's next read (the
    next training batch, or validation where the worker had read ahead) fails: the run fails with the URL,
    after boto3's bounded retries, and does not go on with the videos it could read."""
    server, _ = s3
    base, _ = prepared
    shards.upload(base / "shards", "s3://videos/tiny")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setattr(shard_probe, "STOP", server.stop)
    cfg = make_cfg(["data.root=s3://videos/tiny", f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=1",
                    "model.backbone=resnet18", "+callbacks.stop_store._target_=shard_probe.StopStore"])
    with pytest.raises(shards.ShardError, match=r"^cannot .* s3://videos/tiny/(train|val) after 2 attempts .*Endpoint"
                       ) as err:
        train(cfg)
    assert "Traceback" not in str(err.value)  # the worker's message, not torch's report of where it was raised
    assert shard_probe.STOP is None  # it stopped the store, inside the first epoch
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "run.json").read_text())["state"] == "failed"
    assert not (out / "metrics.json").exists()
    assert not (out / "bad_files.tsv").exists()  # a store that went away is not a bad video
    assert not list((tmp_path / "cache").rglob("chunk-*.bin"))  # every sample was read from the server


# ----------------------------------------------------------------------------------------------------
# stopped and resumed from the shards: the signal tests' mechanism (tests/runs: run_probe.SlowCheckpointWrite
# holds the first checkpoint write until the test has sent SIGTERM, so the run stops at the end of the next
# training batch, inside epoch 1), on a real training process forked from the launcher


PROBES = Path(__file__).resolve().parents[1] / "runs"  # run_probe.py
RESUMED = [*TINY_SYNTHETIC, *TINY_RUN, "trainer.max_epochs=2", "trainer.deterministic=true", "model.backbone=resnet18",
           "model.pretrained=false", "+callbacks.probe._target_=run_probe.SlowCheckpointWrite"]
COMPARED = ("test/top1", "test/top5", "val/top1", "val/top1_best", "val/loss", "train/loss_epoch")


# a SLURM batch job's task, and a fake `scontrol` that does what a requeue does: SLURM ends the job with SIGTERM
# (as tests/runs/test_signals.py)
SLURM = dict(SLURM_JOB_ID="4242", SLURM_JOB_NAME="tanet", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
             SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost")
FAKE_SCONTROL = '#!/bin/sh\necho "$@" >> "{log}"\nkill -TERM $PPID\n'


def _train(launcher, cwd: Path, data_dir: Path, *args: str, stop: signal.Signals | None = None, slurm: bool = False):
    """`python -m tanet_lightning.train`; ``stop``: that signal inside the epoch-0 checkpoint write, which then
    goes on (run_probe.SlowCheckpointWrite), so the run stops at the end of the next batch. Returns (exit
    status, output, the run directory)."""
    cwd.mkdir(exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}  # AWS_* from s3
    full.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join([str(PROBES), os.environ.get("PYTHONPATH", "")]))
    if stop is not None:
        full["TANET_TEST_SLOW_SAVE"] = "1"
    if slurm:
        (cwd / "bin").mkdir(exist_ok=True)
        (cwd / "bin" / "scontrol").write_text(FAKE_SCONTROL.format(log=cwd / "scontrol_calls.txt"))
        (cwd / "bin" / "scontrol").chmod(0o755)
        full.update(SLURM, PATH=f"{cwd / 'bin'}{os.pathsep}{os.environ['PATH']}")
    proc = launched.popen(launcher, [sys.executable, "-m", "tanet_lightning.train", *RESUMED, *args], cwd, full)
    runs = cwd / "logs" / "train" / "runs"
    if stop is not None:
        deadline = time.monotonic() + 300
        while not list(runs.glob("*/saving")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(stop)
        next(runs.glob("*/saving")).with_name("signalled").write_text("")
    log = proc.communicate(timeout=600)[0]
    (run,) = runs.iterdir()
    return proc.returncode, log, run


@pytest.mark.slow  # seven training processes: ~5-7 min on 2 loaded cores
def test_stopped_mid_epoch_and_resumed_from_shards_ends_like_an_uninterrupted_run(prepared, s3, launcher, tmp_path):
    """SIGTERM, then the same command with ``ckpt_path=last`` (the run starts epoch 1 again from last.ckpt), from
    local shards and from S3; and SLURM's USR1 from S3: the exact mid-epoch state in hpc_ckpt_1.ckpt, the
    requeued job's same command replaying the epoch's first batch (ResumableLoader) and going on from there."""
    server, secret = s3
    base, _ = prepared
    shards.upload(base / "shards", "s3://videos/tiny")
    data, local = base / "data", [f"data.root={base / 'shards'}"]
    remote = ["data.root=s3://videos/tiny", f"data.cache_dir={tmp_path / 'cache'}"]
    rc, log, reference = _train(launcher, tmp_path / "uninterrupted", data, *local)
    assert rc == 0, log[-3000:]
    want = json.loads((reference / "metrics.json").read_text())
    for name, root, stop in (("local", local, signal.SIGTERM), ("s3", remote, signal.SIGTERM),
                             ("s3-usr1", remote, signal.SIGUSR1)):
        cwd, slurm = tmp_path / name, stop == signal.SIGUSR1
        rc, log, run = _train(launcher, cwd, data, *root, stop=stop, slurm=slurm)
        record = json.loads((run / "run.json").read_text())
        assert (rc, record["state"]) == ((138, "requeued") if slurm else (143, "interrupted")), (name, log[-3000:])
        assert not (run / "metrics.json").exists()
        if slurm:  # the state inside epoch 1, one batch trained
            assert record["reason"] == "SLURM requeue signal: state saved in hpc_ckpt_1.ckpt", record
            state = torch.load(next(run.rglob("hpc_ckpt_1.ckpt")), map_location="cpu", weights_only=True)
            assert (state["epoch"], state["global_step"]) == (1, 4), name
        else:  # stopped inside epoch 1: its batches are trained again from its start
            last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            assert last["epoch"] == 0, name
        rc, log, run = _train(launcher, cwd, data, *root, *([] if slurm else ["ckpt_path=last"]), slurm=slurm)
        assert rc == 0, (name, log[-3000:])
        got = json.loads((run / "metrics.json").read_text())
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], abs=1e-6), (name, key)
    for path in tmp_path.glob("s3*/**/*"):  # the credentials stayed in the environment
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
