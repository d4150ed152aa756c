"""Class folders as users have them: copied from a Mac or a notebook server, nested, with stray files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tanet_lightning.base.errors import DataError
from tanet_lightning.data import VIDEO_EXTENSIONS, VideoDataModule, find_videos


@pytest.fixture(scope="module")
def clip(vt, tmp_path_factory) -> Path:
    return vt.write_video(tmp_path_factory.mktemp("clip") / "c.mp4", vt.random_frames(8, 32, 32), "libx264", gop=4)


def _put(clip: Path, *paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, p)


def _folder_dm(root: Path, **kw) -> VideoDataModule:
    return VideoDataModule(root.parent, format="video_folder", root=str(root), num_workers=0, **kw)


def test_hidden_and_system_entries_are_not_classes_or_videos(tmp_path, clip, caplog):
    root = tmp_path / "my_videos"
    _put(clip, *(root / c / f"{i}.mp4" for c in ("jump", "walk") for i in range(3)))
    _put(clip, root / ".ipynb_checkpoints" / "x.mp4", root / "__MACOSX" / "jump" / "._0.mp4",
         root / "walk" / ".ipynb_checkpoints" / "0-checkpoint.mp4")
    (root / "jump" / "._1.mp4").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # resource fork, not a video
    for junk in ("Thumbs.db", "desktop.ini", ".DS_Store"):
        (root / "jump" / junk).write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"x")
    (root / "walk" / "notes.txt").write_text("labels by hand\n")
    (root / "walk" / "frame.jpg").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="tanet_lightning"):
        dm = _folder_dm(root)
    assert dm.class_names == ["jump", "walk"]
    records = dm._read_records("train") + dm._read_records("val")
    assert sorted(Path(r.path).relative_to(root).as_posix() for r in records) == \
        [f"{c}/{i}.mp4" for c in ("jump", "walk") for i in range(3)]
    # the two stray files are counted (system entries are not), once, with their kinds
    warned = [r.getMessage() for r in caplog.records if "not videos" in r.getMessage()]
    assert len(warned) == 1 and "2 files" in warned[0] and ".txt: 1" in warned[0] and ".jpg: 1" in warned[0]


def test_an_empty_class_folder_is_refused_naming_it(tmp_path, clip):
    root = tmp_path / "v"
    _put(clip, root / "jump" / "0.mp4", root / "jump" / "1.mp4")
    (root / "walk").mkdir()
    (root / "walk" / "readme.txt").write_text("todo\n")
    with pytest.raises(DataError, match=r"class folder .*/v/walk holds no videos.*add videos.*or remove the folder"):
        _folder_dm(root)


def test_videos_in_nested_folders_belong_to_the_top_level_class(tmp_path, clip):
    root = tmp_path / "v"
    _put(clip, root / "jump" / "a.mp4", root / "jump" / "2023" / "cam1" / "b.MP4", root / "walk" / "day1" / "c.mov",
         root / "walk" / "day2" / "d.mkv")
    dm = _folder_dm(root, val_fraction=0.5)
    assert dm.class_names == ["jump", "walk"]
    records = dm._read_records("train") + dm._read_records("val")
    got = sorted((Path(r.path).relative_to(root).as_posix(), r.label) for r in records)
    assert got == [("jump/2023/cam1/b.MP4", 0), ("jump/a.mp4", 0), ("walk/day1/c.mov", 1), ("walk/day2/d.mkv", 1)]


def test_split_folders_ignore_hidden_entries_and_read_nested_videos(tmp_path, clip):
    root = tmp_path / "v"
    _put(clip, root / "train" / "jump" / "a.mp4", root / "train" / "walk" / "s" / "b.mp4",
         root / "val" / "jump" / "c.mp4", root / "val" / ".ipynb_checkpoints" / "d.mp4",
         root / "val" / "walk" / "deep" / "e.webm", root / "train" / "__MACOSX" / "f.mp4")
    dm = _folder_dm(root)
    assert dm.class_names == ["jump", "walk"]
    assert [Path(r.path).name for r in dm._read_records("val")] == ["c.mp4", "e.webm"]
    assert [r.label for r in dm._read_records("test")] == [0, 1]  # test falls back to val


def test_find_videos_is_the_one_walk(tmp_path, clip):
    _put(clip, tmp_path / "a.mp4", tmp_path / "x" / "b.WEBM", tmp_path / ".hidden" / "c.mp4", tmp_path / "._d.mp4")
    (tmp_path / "x" / "e.txt").write_text("")
    found = find_videos(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in found.videos] == ["a.mp4", "x/b.WEBM"]
    assert [Path(p).name for p in found.ignored] == ["e.txt"]
    assert [Path(p).name for p in find_videos(tmp_path, recursive=False).videos] == ["a.mp4"]
    assert ".mp4" in VIDEO_EXTENSIONS and all(e == e.lower() and e.startswith(".") for e in VIDEO_EXTENSIONS)


def test_vid_extensions_and_transform_defaults_are_written_once():
    """grep finds VIDEO_EXTENSIONS' definition and each transform default in one place of the data package."""
    src = Path(__file__).resolve().parents[2] / "src" / "tanet_lightning" / "data"
    text = {p.name: p.read_text() for p in src.glob("*.py")}
    for needle in ("VIDEO_EXTENSIONS = ", '"{:05d}.jpg"', "0.875, 0.75, 0.66", "= 224", "= 256",
                   "def parse_views", "def find_videos"):
        where = [name for name, t in text.items() if needle in t]
        assert len(where) == 1 and text[where[0]].count(needle) == 1, (needle, where)
