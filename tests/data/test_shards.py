"""A prepared dataset as LitData shards, read from a folder and from an S3 server on the loopback address:
the same clips, fingerprints, training and evaluation as the prepared files."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from tanet_lightning.data import shards
from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.eval import evaluate
from tanet_lightning.prepare import prepare
from tanet_lightning.train import train
from tinyconf import TINY_SPEC, TINY_SYNTHETIC, compose_config

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
    assert not list(out.glob(".*.writing"))


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


@pytest.fixture
def s3(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
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
