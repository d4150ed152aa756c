"""The one atomic write (base/files.py ``atomic_path``, ``atomic_dir``): the new content replaces the file whole,
or, on any exception, the old content stays and no temporary file is left behind."""

from __future__ import annotations

import os
import socket

import pytest

from tanet_lightning.base.files import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    temp_name,
    this_hosts_temps,
)


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".run.json.") and tmp.name.endswith(".tmp")
        tmp.write_text("new")
        assert path.read_text() == "old"  # not before the block has ended
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["run.json"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(error):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise error
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_a_given_temporary_path_is_used_and_removed_on_failure(tmp_path):
    (tmp_path / "work").mkdir()
    part = tmp_path / "work" / "0.mp4"
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "a.mp4", tmp=part) as tmp:
            assert tmp == part
            tmp.write_bytes(b"x")
            raise OSError("encoder failed")
    assert os.listdir(tmp_path / "work") == [] and not (tmp_path / "a.mp4").exists()
    with atomic_path(tmp_path / "a.mp4", tmp=part) as tmp:
        tmp.write_bytes(b"video")
    assert (tmp_path / "a.mp4").read_bytes() == b"video" and os.listdir(tmp_path / "work") == []


def test_a_symlink_is_replaced_never_followed(tmp_path):
    target = tmp_path / "dataset.txt"
    target.write_text("input")
    (tmp_path / "out.txt").symlink_to(target)
    atomic_write_bytes(tmp_path / "out.txt", b"output")
    assert target.read_text() == "input" and not (tmp_path / "out.txt").is_symlink()
    atomic_write_text(tmp_path / "out.txt", "again")
    assert (tmp_path / "out.txt").read_text() == "again"


def test_a_folder_is_put_in_place_whole_never_merged_and_this_hosts_leftovers_are_found(tmp_path):
    root = tmp_path / "variant"
    with atomic_dir(root) as tmp:
        (tmp / "manifest.json").write_text("{}")
        assert not root.exists()
    assert os.listdir(root) == ["manifest.json"]
    with pytest.raises(OSError):  # another writer made it meanwhile: not merged into
        with atomic_dir(root) as tmp:
            (tmp / "other").write_text("")
    assert os.listdir(root) == ["manifest.json"] and sorted(os.listdir(tmp_path)) == ["variant"]
    mine = temp_name(root)
    mine.mkdir()  # a killed writer's, on this host
    (tmp_path / f".variant.{socket.gethostname()}-gpu-1-0123abcd.tmp").mkdir()  # host <this one>-gpu's
    assert this_hosts_temps(root) == [mine]


def test_a_replaced_folder_stays_until_the_new_one_is_whole(tmp_path):
    """``replace=True`` (a split of shards written again): the old folder is kept if the new one fails, and
    is gone, with no temporary left, once the new one is in place."""
    root = tmp_path / "train"
    root.mkdir()
    (root / "old.bin").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(root, replace=True) as tmp:
        (tmp / "new.bin").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in root.iterdir()) == ["old.bin"]
    with atomic_dir(root, replace=True) as tmp:
        (tmp / "new.bin").write_text("new")
    assert sorted(p.name for p in root.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
