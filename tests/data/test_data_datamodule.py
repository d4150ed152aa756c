"""The DataModule composed from conf/data/*.yaml with Hydra, the synthetic dataset, real Lightning."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tanet_lightning.base.errors import DataError
from tanet_lightning.data import AnnotationError, VideoDataModule
from tanet_lightning.data.io import read_video_frames
from tanet_lightning.data.synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose_data(name: str, data_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=[f"+data={name}", f"+paths.data_dir={data_dir}", *overrides])


@pytest.fixture(scope="module")
def synthetic_dm(default_data_dir):
    """The app's default data config, generated for real (full size) once per session, in the data directory
    the documented commands read (under `make test` they have usually generated it already). Its tests are
    marked heavy: out of `make test-quick`, where its 800 videos would cost ~8 s of CPU to generate."""
    cfg = compose_data(
        "synthetic", default_data_dir, "data.num_workers=2", "data.batch_size=16", "data.test_views=2x3"
    )
    dm = instantiate(cfg.data)
    dm.prepare_data()
    return dm


@pytest.mark.heavy  # the full-size default set (synthetic_dm)
def test_synthetic_default_generated_and_batches_flow(synthetic_dm):
    dm = synthetic_dm
    manifest = json.loads((dm.root / "manifest.json").read_text())
    assert manifest["stats"]["videos"] == 800
    assert len(set(manifest["stats"]["gops"].values())) > 1  # mixed GOP sizes
    assert dm.num_classes == 8 and dm.class_names[:2] == ["move_left", "move_right"] and dm.num_frames == 8
    assert dm.flip_label_map == {0: 1, 1: 0, 4: 5, 5: 4}
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert not loader.persistent_workers and loader.num_workers == 2  # restarted per epoch: exact resume
    batch = next(iter(loader))
    assert batch["video"].shape == (16, 8, 3, 32, 32) and batch["video"].dtype == torch.uint8
    assert all(
        batch[k].dtype == torch.int64 and batch[k].shape == (16,) for k in ("label", "video_idx", "view_idx")
    )
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["video"].dtype == torch.float32 and out["video"].is_contiguous()
    assert -2.2 < out["video"].min() and out["video"].max() < 2.7
    dm.setup("test")
    assert len(dm.datasets["test"]) == 80 * 6 and dm.test_views_per_video() == 6
    assert dm.bad_files() == []


@pytest.mark.heavy  # the full-size default set (synthetic_dm)
def test_synthetic_videos_are_real_h264_with_expected_layout(synthetic_dm):
    import av

    root = synthetic_dm.root
    lines = (root / "train.txt").read_text().split("\n")
    assert (
        len([ln for ln in lines if ln]) == 640
        and (root / "classes.txt").read_text().split() == synthetic_dm.class_names
    )
    rel, label = lines[0].split()
    with av.open(str(root / rel)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and (s.width, s.height) == (48, 48) and 16 <= s.frames <= 24
    assert label == "0"


@pytest.mark.heavy  # the full-size default set (synthetic_dm)
def test_lightning_trainer_normalises_on_device(synthetic_dm):
    seen = {}

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, _):
            seen.update(
                dtype=batch["video"].dtype,
                shape=tuple(batch["video"].shape),
                mean=batch["video"].mean().item(),
            )
            return (self.w * batch["video"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Probe(), datamodule=synthetic_dm)
    assert seen["dtype"] == torch.float32 and seen["shape"] == (16, 8, 3, 32, 32) and abs(seen["mean"]) < 1.5


@pytest.mark.heavy  # the full-size default set (synthetic_dm)
def test_loading_is_reproducible_under_seed_everything(synthetic_dm):
    def first_batch(seed):
        L.seed_everything(seed, workers=True)
        dm = VideoDataModule(
            synthetic_dm.data_dir,
            "synthetic",
            root=str(synthetic_dm.root.parent),  # the variants' folder: the same settings, the same data
            synthetic=asdict(synthetic_dm.source.synthetic),
            short_side=40,
            crop_size=32,
            batch_size=8,
            num_workers=2,
        )
        assert dm.root == synthetic_dm.root
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["video"], c["video"])


def test_synthetic_generation_is_seeded_and_idempotent(tmp_path):
    spec = SyntheticSpec(seed=3, train_per_class=2, val_per_class=1, test_per_class=1)
    m1 = ensure_synthetic(tmp_path / "a", spec, workers=2)  # processes, as a first run on 2+ cores
    m2 = ensure_synthetic(tmp_path / "b", spec, workers=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.mp4"))
    assert len(files) == 32 and m1["stats"] == m2["stats"]
    for name in [*files, "train.txt", "val.txt", "test.txt"]:  # parallel = serial, byte for byte
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    same = [
        read_video_frames(tmp_path / "a" / f, [0, 5]).equal(read_video_frames(tmp_path / "b" / f, [0, 5]))
        for f in files
    ]
    assert all(same)
    mtime = (tmp_path / "a" / "manifest.json").stat().st_mtime_ns
    ensure_synthetic(tmp_path / "a", spec)  # same version + spec: nothing regenerated
    assert (tmp_path / "a" / "manifest.json").stat().st_mtime_ns == mtime
    other = SyntheticSpec(seed=4, train_per_class=2, val_per_class=1, test_per_class=1)
    with pytest.raises(DataError, match=r"holds synthetic data of other settings.*not replaced"):
        ensure_synthetic(tmp_path / "a", other)  # another variant never replaces this one
    assert (tmp_path / "a" / "manifest.json").stat().st_mtime_ns == mtime
    assert synthetic_dir(tmp_path, other) != synthetic_dir(tmp_path, spec)  # its own directory instead


def test_synthetic_class_is_invisible_in_single_frames():
    # each reversal pair is the same distribution run backwards: class 0 reversed ~ class 1
    from tanet_lightning.data.synthetic import render_video

    spec = SyntheticSpec()
    centre_x = {0: [], 1: []}
    for label in (0, 1):
        for i in range(60):
            v = render_video(label, np.random.default_rng([9, label, i]), spec).astype(float)
            obj = np.abs(v - np.median(v, axis=0)).sum(-1) > 60  # pixels that change = the object
            xs = [np.nonzero(f.any(0))[0].mean() for f in obj if f.any()]
            centre_x[label] += xs
    # the object's x position over all frames has the same distribution for left and right
    assert abs(np.mean(centre_x[0]) - np.mean(centre_x[1])) < 1.5
    assert abs(np.std(centre_x[0]) - np.std(centre_x[1])) < 1.5


@pytest.mark.parametrize("name", ["kinetics400", "sthv1", "sthv2", "video_list"])
def test_real_configs_fail_early_naming_the_key(tmp_path, name):
    cfg = compose_data(name, tmp_path)
    with pytest.raises(AnnotationError, match=r"data\.train_ann.*not found.*Set data\.train_ann=") as err:
        VideoDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    assert str(tmp_path) in str(err.value)
    with pytest.raises(Exception, match="data.train_ann"):  # the same through Hydra's instantiate
        instantiate(cfg.data)


def test_missing_labels_file_names_data_classes(tmp_path):
    (tmp_path / "sthv2" / "labels").mkdir(parents=True)
    for f in ("train.json", "validation.json"):
        (tmp_path / "sthv2" / "labels" / f).write_text("[]")
    with pytest.raises(Exception, match=r"data\.classes.*labels\.json.*Set data\.classes="):
        instantiate(compose_data("sthv2", tmp_path).data)


def test_kinetics_config_instantiates_with_paper_protocol(vt, tmp_path):
    ann = tmp_path / "kinetics400" / "annotations"
    ann.mkdir(parents=True)
    header = "label,youtube_id,time_start,time_end,split\n"
    (ann / "train.csv").write_text(header + "b class,v1,0,10,train\na class,v2,3,13,train\n")
    (ann / "validate.csv").write_text(header + "a class,v3,0,10,val\n")
    val_dir = tmp_path / "kinetics400" / "videos" / "val"
    val_dir.mkdir(parents=True)
    vt.write_video(val_dir / "v3_000000_000010.mp4", vt.random_frames(80, 48, 64), "libx264", gop=30)
    cfg = compose_data(
        "kinetics400", tmp_path, "data.short_side=48", "data.test_crop_size=48", "data.num_workers=0"
    )
    dm = instantiate(cfg.data)
    assert dm.class_names == ["a_class", "b_class"]
    assert dm.settings.sampler == "dense" and dm.settings.dense_window == 64
    dm.setup("test")
    test = dm.datasets["test"]
    assert len(test) == 30  # 10 clips x 3 crops of the one val video
    item = test[29]
    assert item["video"].shape == (8, 3, 48, 48) and (item["video_idx"], item["view_idx"], item["label"]) == (
        0,
        29,
        0,
    )
    assert (
        instantiate(
            compose_data("kinetics400", tmp_path, "data.test_views=4x3", "data.num_frames=16").data
        ).test_views_per_video()
        == 12
    )


def test_sthv1_and_sthv2_configs_with_tiny_datasets(vt, tmp_path):
    v1 = tmp_path / "sthv1"
    names = [f"class {i}" for i in range(70)]
    (v1 / "20bn-something-something-v1").mkdir(parents=True)
    (v1 / "something-something-v1-labels.csv").write_text("\n".join(names) + "\n")
    (v1 / "something-something-v1-train.csv").write_text("1;class 2\n")
    (v1 / "something-something-v1-validation.csv").write_text("1;class 41\n")
    vt.write_frame_folder(
        v1 / "20bn-something-something-v1" / "1", vt.random_frames(16, 40, 56), "{:05d}.jpg"
    )
    dm = instantiate(
        compose_data(
            "sthv1", tmp_path, "data.short_side=40", "data.crop_size=32", "data.test_crop_size=32"
        ).data
    )
    assert dm.num_classes == 70 and dm.flip_label_map[2] == 4 and dm.flip_label_map[41] == 30
    dm.setup("test")
    assert len(dm.datasets["test"]) == 1 and dm.datasets["test"][0]["video"].shape == (8, 3, 32, 32)

    v2 = tmp_path / "sthv2"
    (v2 / "labels").mkdir(parents=True)
    (v2 / "videos").mkdir()
    labels = {"Doing [x]": "0", "Doing y": "1", **{f"class {i}": str(i) for i in range(2, 174)}}
    (v2 / "labels" / "labels.json").write_text(json.dumps(labels))  # all 174: its flip map names 86..167
    (v2 / "labels" / "train.json").write_text(json.dumps([{"id": "5", "template": "Doing [x]"}]))
    (v2 / "labels" / "validation.json").write_text(json.dumps([{"id": "5", "template": "Doing y"}]))
    vt.write_video(v2 / "videos" / "5.webm", vt.random_frames(20, 40, 56), "libvpx-vp9", gop=10)
    dm = instantiate(
        compose_data(
            "sthv2", tmp_path, "data.short_side=40", "data.crop_size=32", "data.test_crop_size=40"
        ).data
    )
    dm.setup("test")
    items = [dm.datasets["test"][i] for i in range(6)]  # 2 clips x 3 crops
    assert [it["view_idx"] for it in items] == list(range(6)) and items[0]["video"].shape == (8, 3, 40, 40)
    assert dm.flip_label_map[87] == 86 and dm.bad_files() == []


@pytest.mark.heavy  # the full-size default set (synthetic_dm)
def test_test_protocol_reads_a_video_as_the_test_split_does(synthetic_dm):
    """What checkpoints save (data_config) and predict/export use: the same views as the test split's items."""
    from tanet_lightning.data.protocol import TestProtocol

    dm = synthetic_dm
    dm.setup("test")
    protocol = dm.test_protocol()
    assert protocol.views == (2, 3) and protocol.crop_size == dm.settings.test_crop_size
    saved = {**protocol.to_dict(), "dataset": "synthetic"}  # convert adds keys that are not protocol fields
    assert TestProtocol.from_dict(saved) == protocol
    test = dm.datasets["test"]
    video = 5
    items = torch.stack([test[video * 6 + v]["video"] for v in range(6)])
    assert torch.equal(protocol.read_views(test.records[video].path), items)
    with pytest.raises(ValueError, match="num_frames"):
        TestProtocol.from_dict({"crop_size": 32})
    with pytest.raises(ValueError, match="test_views"):
        protocol.replace(test_views="2x2")
