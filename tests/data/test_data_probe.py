"""The keyframe-spacing probe at setup: long keyframe intervals get the `prepare` command, short ones do not."""

from __future__ import annotations

import logging

import pytest

from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.data.probe import probe_spacing
from tanet_lightning.runs import build
from tinyconf import compose_config, video_set


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory):
    return video_set(tmp_path_factory.mktemp("gop100") / "videos", gop=100)


def test_long_keyframe_spacing_prints_the_prepare_command(tmp_path, long_gop, caplog):
    dm = VideoDataModule(tmp_path, **long_gop)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    root = long_gop["root"]
    hint = [r for r in caplog.records if "loader probe" in r.message]
    assert len(hint) == 1 and hint[0].levelno == logging.WARNING, caplog.text
    assert "keyframe every 100 frames" in hint[0].message and "4 training videos (32x32)" in hint[0].message
    assert (f"python -m tanet_lightning.prepare data=video_list data.train_ann={root}/train.txt "
            f"data.val_ann={root}/val.txt data.root={root} out={root}_prepared gop=30") in hint[0].message
    caplog.clear()
    dm.setup("fit")  # once per module
    assert "loader probe" not in caplog.text


def test_short_keyframe_spacing_reports_without_the_hint(tmp_path, caplog):
    dm = VideoDataModule(tmp_path, **video_set(tmp_path / "videos", gop=10))
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert "keyframe every 10 frames" in caplog.text and "prepare" not in caplog.text
    assert all(r.levelno == logging.INFO for r in caplog.records if "loader probe" in r.message)


def test_the_command_repeats_the_launch_data_config(tmp_path, long_gop, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = long_gop["root"]
    cfg = compose_config("train", ["data=video_list", f"data.root={root}", f"data.train_ann={root}/train.txt",
                                   f"data.val_ann={root}/val.txt", "data.num_workers=0", "data.short_side=32",
                                   "data.crop_size=32", "data.batch_size=2"])
    with caplog.at_level(logging.WARNING):
        build.instantiate_data(cfg).setup("fit")
    assert (f"python -m tanet_lightning.prepare data=video_list data.train_ann={root}/train.txt "
            f"data.val_ann={root}/val.txt data.num_workers=0 data.short_side=32 data.crop_size=32 data.batch_size=2 "
            f"data.root={root} out={root}_prepared gop=30") in caplog.text


def test_probe_passes_over_frame_folders_and_unreadable_files(tmp_path, long_gop):
    (tmp_path / "frames").mkdir()
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert probe_spacing([str(tmp_path / "frames")]) is None
    probe = probe_spacing([str(tmp_path / "bad.mp4"), f"{long_gop['root']}/v0.mp4"])
    assert probe.videos == 1 and probe.frames_per_keyframe == 100 and probe.long
