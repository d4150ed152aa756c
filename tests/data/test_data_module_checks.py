"""What the DataModule refuses before the first step, and the one protocol its test split reads through."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tanet_lightning.base.errors import ConfigError, DataError
from tanet_lightning.data import ClipSettings, TestProtocol, VideoDataModule, Views, parse_views

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def list_root(vt, tmp_path_factory) -> Path:
    """6 training videos (3 classes), 2 val videos, as a video list."""
    root = tmp_path_factory.mktemp("lists")
    for i in range(8):
        vt.write_video(root / f"v{i}.mp4", vt.random_frames(8, 32, 40, seed=i), "libx264", gop=4)
    (root / "train.txt").write_text("".join(f"v{i}.mp4 {i % 3}\n" for i in range(6)))
    (root / "val.txt").write_text("v6.mp4 0\nv7.mp4 2\n")
    return root


def _dm(root: Path, **kw) -> VideoDataModule:
    args = dict(format="video_list", root=str(root), train_ann=str(root / "train.txt"),
                val_ann=str(root / "val.txt"), num_frames=4, short_side=32, crop_size=32, num_workers=0)
    return VideoDataModule(root, **{**args, **kw})


class _Probe(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w, self.steps = torch.nn.Parameter(torch.zeros(1)), 0

    def training_step(self, batch, _):
        self.steps += 1
        return (self.w * batch["video"].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fewer_training_videos_than_a_batch_is_refused_before_the_first_step(list_root):
    probe = _Probe()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0)
    with pytest.raises(DataError, match=r"training split has 6 videos.*data\.batch_size=8 x trainer\.devices "
                                        r"\(world size 1\).*data\.batch_size<=6"):
        trainer.fit(probe, datamodule=_dm(list_root, batch_size=8))
    assert probe.steps == 0
    _dm(list_root, batch_size=6).check_annotations()  # one full batch: fine


def test_the_world_size_counts_each_device_gets_its_share(list_root):
    dm = _dm(list_root, batch_size=4)
    dm.check_annotations()  # 6 videos, one device: one batch
    with pytest.raises(DataError, match=r"6 videos.*batch_size=4 x trainer\.devices \(world size 3\).*<=2"):
        dm.check_annotations(world_size=3)
    dm = _dm(list_root, batch_size=4)
    dm.trainer = L.Trainer(accelerator="cpu", devices=3, logger=False)  # DDP sharding: 2 videos per device
    with pytest.raises(DataError, match=r"world size 3"):
        dm.setup("fit")


def test_an_empty_val_or_test_split_is_refused_naming_its_file(list_root, tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(DataError, match=r"the val split is empty: .*empty\.txt \(data\.val_ann\)"):
        _dm(list_root, val_ann=str(tmp_path / "empty.txt")).setup("fit")
    with pytest.raises(DataError, match=r"the test split is empty: .*empty\.txt \(data\.test_ann\)"):
        _dm(list_root, test_ann=str(tmp_path / "empty.txt")).setup("test")


def test_a_class_folder_of_single_videos_has_no_val_split_and_says_why(vt, tmp_path):
    for c in ("a", "b"):
        (tmp_path / "v" / c).mkdir(parents=True)
        vt.write_video(tmp_path / "v" / c / "x.mp4", vt.random_frames(8, 32, 32), "libx264", gop=4)
    dm = VideoDataModule(tmp_path, format="video_folder", root=str(tmp_path / "v"), num_workers=0, batch_size=1)
    with pytest.raises(DataError, match=r"val split is empty.*at most one video"):
        dm.setup("fit")


def test_the_test_split_reads_its_views_through_the_one_protocol(list_root):
    dm = _dm(list_root, test_views="2x3", test_crop_size=24)
    dm.setup("test")
    test = dm.datasets["test"]
    assert dm.test_protocol() is dm.protocol and test.protocol is dm.protocol
    assert dm.protocol.views == Views(2, 3) and dm.protocol.crop_size == 24 and dm.test_views_per_video() == 6
    items = torch.stack([test[6 + v]["video"] for v in range(6)])
    assert torch.equal(items, dm.protocol.read_views(test.records[1].path))
    dm.protocol = dm.protocol.replace(test_views="1x3")  # nothing else holds the views: the split follows
    assert len(dm._dataset("test")) == 2 * 3


def test_protocol_from_a_data_config_is_the_datamodules(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+data=synthetic", f"+paths.data_dir={tmp_path}", "data.test_views=2X3"])
    dm = instantiate(cfg.data)  # synthetic: nothing generated before prepare_data
    assert TestProtocol.from_data_config(cfg.data) == dm.test_protocol()
    converted = TestProtocol.from_data_config(cfg.data, num_frames=16, mean=(0.5, 0.5, 0.5))
    assert converted.num_frames == 16 and converted.mean == (0.5, 0.5, 0.5) and converted.test_views == "2x3"
    assert converted.crop_size == cfg.data.test_crop_size and converted.short_side == cfg.data.short_side


def test_settings_parse_views_once_and_name_bad_keys(list_root):
    assert parse_views("10X3") == Views(10, 3) and str(Views(10, 3)) == "10x3"
    assert ClipSettings(test_views="2x3").test_views == Views(2, 3)
    assert ClipSettings(crop_size=112).test_crop_size == 112  # null test crop = the crop
    for kw, key in [(dict(test_views="2x2"), "data.test_views"), (dict(crop_size=0), "data.crop_size"),
                    (dict(scales=[1.0, 1.5]), "data.scales"), (dict(sampler="random"), "data.sampler")]:
        with pytest.raises(ConfigError, match=key):
            ClipSettings(**kw)
    # the schema's unknown-key line (the constructor checks with the same model): the closest key named
    with pytest.raises(ConfigError, match=r"data\.crop_sise: unknown key; did you mean data\.crop_size\?"):
        _dm(list_root, crop_sise=32)
    with pytest.raises(ConfigError, match=r"data\.synthetic\.frames: unknown key; did you mean "):
        VideoDataModule(list_root, "synthetic", synthetic={"frames": 8})
    (list_root / "none.txt").write_text("# to do\n")
    with pytest.raises(DataError, match=r"train split is empty: .*none\.txt \(data\.train_ann\)"):
        _dm(list_root, train_ann=str(list_root / "none.txt"))
    with pytest.raises(ConfigError, match=r"data\.format='folders' must be one of"):
        VideoDataModule(list_root, format="folders")


def test_class_names_for_every_format_in_label_order(list_root, tmp_path):
    assert _dm(list_root).class_names == ["0", "1", "2"]
    (tmp_path / "classes.txt").write_text("jump\nrun\nwalk\n")
    assert _dm(list_root, classes=str(tmp_path / "classes.txt")).class_names == ["jump", "run", "walk"]
    synthetic = VideoDataModule(tmp_path, "synthetic")
    assert synthetic.class_names[:2] == ["move_left", "move_right"] and synthetic.num_classes == 8
