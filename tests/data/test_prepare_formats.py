"""Every annotation format `prepare` reads comes out as the same format, classes and labels, with the data.*
keys it prints (the copy read back through a DataModule, as training reads it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import pytest
from hydra.utils import instantiate

from tanet_lightning.data.index import VideoIndex
from tanet_lightning.prepare import prepare
from tinyconf import compose_config

KEYS = ["gop=4", "workers=1", "progress=false"]
SMALL = ["data.num_workers=0", "data.batch_size=2", "data.flip_label_map=null", "data.short_side=32",
         "data.crop_size=32", "data.test_crop_size=32"]


def _video(vt, path: Path, seed: int, codec: str = "libx264") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vt.write_video(path, vt.random_frames(10, 32, 40, seed=seed), codec, gop=250)


def sthv2(vt, data: Path) -> list[str]:
    labels = data / "sthv2" / "labels"
    labels.mkdir(parents=True)
    names = ["Pushing something left", "Pushing something right"]
    (labels / "labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(names)}))
    for split, ids in (("train", [1, 2, 3, 4]), ("validation", [5, 6])):
        items = [{"id": str(i), "template": names[i % 2].replace("something", "[something]")} for i in ids]
        (labels / f"{split}.json").write_text(json.dumps(items))
        for i in ids:
            _video(vt, data / "sthv2" / "videos" / f"{i}.webm", i, "libvpx-vp9")
    return ["data=sthv2", *SMALL]


def video_folder(vt, data: Path) -> list[str]:
    for c in ("cat", "dog"):
        for i in range(3):
            _video(vt, data / "mine" / c / "sub" / f"{c}{i}.mp4", i)
    return ["data=video_folder", f"data.root={data / 'mine'}", *SMALL]


def sthv1(vt, data: Path) -> list[str]:
    base = data / "sthv1"
    base.mkdir(parents=True)
    (base / "something-something-v1-labels.csv").write_text("Holding something\nMoving something\n")
    for split, ids in (("train", [1, 2, 3]), ("validation", [4, 5])):
        (base / f"something-something-v1-{split}.csv").write_text(
            "".join(f"{i};{['Holding something', 'Moving something'][i % 2]}\n" for i in ids))
        for i in ids:
            vt.write_frame_folder(base / "20bn-something-something-v1" / str(i), vt.random_frames(8, 32, 40, seed=i),
                                  "{:05d}.jpg")
    return ["data=sthv1", *SMALL]


def _rows(datamodule, split: str) -> list[tuple[str, int]]:
    return sorted((Path(r.path).name, r.label) for r in datamodule._read_records(split))


def video_list(vt, data: Path) -> list[str]:
    """Paths with spaces, one absolute and one outside the root (both get a folder of their own in the copy)."""
    root = data / "video_list"
    for i, rel in enumerate(["a clip.mp4", "sub/b.mp4", "../elsewhere/c.mp4", "d.mp4"]):
        _video(vt, root / rel, i)
    (root / "train.txt").write_text(f"a clip.mp4 0\nsub/b.mp4 1\n../elsewhere/c.mp4 0\n{root / 'd.mp4'} 1\n")
    (root / "val.txt").write_text("# val\nsub/b.mp4 1\n")
    return ["data=video_list", *SMALL]


@pytest.mark.parametrize("make", [sthv2, video_folder, sthv1, video_list])
def test_the_copy_reads_as_the_dataset(vt, tmp_path, monkeypatch, make):
    data, out = tmp_path / "data", tmp_path / "out"
    monkeypatch.setenv("TANET_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    keys = make(vt, data)
    done = prepare(compose_config("prepare", [*keys, f"out={out}", *KEYS]))
    assert not done["result"].failed
    source = instantiate(compose_config("train", keys).data)
    copy = instantiate(compose_config("train", [*keys, *done["overrides"]]).data)
    assert copy.class_names == source.class_names
    for split in ("train", "val", "test"):
        assert _rows(copy, split) == _rows(source, split), split
    copy.setup("fit")
    assert copy.datasets["train"][0]["valid"] and copy.bad_files() == []
    index = VideoIndex.load(copy.root)
    if make is sthv1:  # frame folders stay frames: linked
        assert index is not None and len(index) == 0
        assert all(os.path.islink(r.path) for r in copy.datasets["train"].records)
        return
    assert len(index) == len({r.path for s in ("train", "val", "test") for r in source._read_records(s)})
    if make is sthv2:  # H.264 in Matroska keeps the .webm name the format expects
        with av.open(str(out / "1.webm")) as c:
            assert c.streams.video[0].codec_context.name == "h264" and "matroska" in c.format.name
    if make is video_folder:  # the seeded split is written out as split folders: it cannot change
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["train", "val"]
