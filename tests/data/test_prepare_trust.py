"""`prepare` never writes over what it reads or over a file it did not write, and never leaves a readable
video out (issue 27, defects 3 and 4). Tiny PyAV videos, the Hydra app's function run in-process."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from tanet_lightning.base.errors import DataError
from tanet_lightning.data import prepare as prepare_module
from tanet_lightning.data.index import INDEX_NAME, VideoIndex
from tanet_lightning.data.io import probe_num_frames
from tanet_lightning.data.prepare import prepare_video
from tanet_lightning.data.prepare_dataset import FAILED
from tanet_lightning.prepare import prepare
from tinyconf import compose_config

MANIFEST, RETRIED = ".prepare_manifest.json", "prepare_retried.tsv"  # the names the README gives
KEYS = ["gop=4", "workers=1", "progress=false"]
TRAIN = "# my train list\na.mp4 0\nb.mp4 1\nc.mp4 0\n"
VAL = "a.mp4 0\nd.mp4 1\n"


def videos(vt, root: Path, names=("a", "b", "c", "d")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        vt.write_video(root / f"{name}.mp4", vt.random_frames(6, 32, 40, seed=i), "libx264", gop=250)
    return root


def lists(folder: Path, train: str = TRAIN, val: str = VAL) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(train)
    (folder / "val.txt").write_text(val)
    return folder / "train.txt", folder / "val.txt"


def keys(root: Path, train: Path, val: Path, out: Path, *more: str) -> list[str]:
    return ["data=video_list", f"data.root={root}", f"data.train_ann={train}", f"data.val_ann={val}", f"out={out}",
            *KEYS, *more]


def run(tmp_path: Path, overrides: list[str]) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TANET_DATA_DIR", str(tmp_path / "data"))
        mp.chdir(tmp_path)
        return prepare(compose_config("prepare", overrides))


def tree(*folders: Path) -> dict[str, bytes | str | None]:
    """Every entry under the folders with its content (a link's target): what a refusal must leave as it was."""
    return {str(p): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            for folder in folders for p in sorted(folder.rglob("*"))}


# ----------------------------------------------------------------------------------------------------
# defect 3: out overlaps an input


def test_annotations_inside_out_are_never_rewritten(vt, tmp_path):
    """The lists in DIR/annotations/ with out=DIR: main rewrote them in place (comments and rows lost)."""
    root = videos(vt, tmp_path / "videos")
    train, val = lists(tmp_path / "mine" / "annotations")
    before = tree(tmp_path / "mine", root)
    with pytest.raises(DataError, match=rf"data.train_ann={train} is inside out={tmp_path / 'mine'}.*give out= a "
                                        r"folder that neither holds nor lies inside the dataset's files"):
        run(tmp_path, keys(root, train, val, tmp_path / "mine"))
    assert tree(tmp_path / "mine", root) == before


@pytest.mark.parametrize("case", ["class file", "root inside out", "out inside root", "video outside root",
                                  "symlinked alias"])
def test_an_out_that_overlaps_any_input_is_refused_before_writing(vt, tmp_path, case):
    root = videos(vt, tmp_path / "data" / "videos")
    train, val = lists(tmp_path / "lists")
    out, more = tmp_path / "out", []
    if case == "class file":
        out.mkdir()
        (out / "classes.txt").write_text("zero\none\n")
        more, want = [f"data.classes={out / 'classes.txt'}"], rf"data.classes={out / 'classes.txt'} is inside out={out}"
    elif case == "root inside out":
        out, want = tmp_path / "data", rf"data.root={root} is inside out={tmp_path / 'data'}"
    elif case == "out inside root":
        out, want = root / "copy", rf"out={root / 'copy'} is inside data.root={root}"
    elif case == "video outside root":  # an absolute path in a list: main only compared out with data.root
        out.mkdir()
        vt.write_video(out / "e.mp4", vt.random_frames(6, 32, 40, seed=9), "libx264", gop=250)
        train.write_text(TRAIN + f"{out / 'e.mp4'} 1\n")
        want = rf"the video={out / 'e.mp4'} is inside out={out}"
    else:  # out names the lists' folder through a symlink: compared as real paths, it is the same folder
        (tmp_path / "alias").symlink_to(tmp_path / "lists", target_is_directory=True)
        out = tmp_path / "alias"
        want = rf"data.train_ann={train} is inside out={out} \(as real paths: {train} and {tmp_path / 'lists'}\)"
    before = tree(tmp_path)
    with pytest.raises(DataError, match=want):
        run(tmp_path, keys(root, train, val, out, *more))
    assert tree(tmp_path) == before  # nothing written, not even the output folder


# ----------------------------------------------------------------------------------------------------
# defect 3: files prepare did not write


def test_a_users_file_in_an_existing_out_is_never_replaced(vt, tmp_path):
    root = videos(vt, tmp_path / "videos")
    train, val = lists(tmp_path / "lists")
    out = tmp_path / "existing"
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "train.txt").write_text("my own list\n")
    (out / "notes.md").write_text("mine too\n")
    before = tree(out, root, tmp_path / "lists")
    with pytest.raises(DataError, match=rf"{out / 'annotations' / 'train.txt'} would be replaced, but prepare did "
                                        rf"not write it .* recorded in {out / MANIFEST}. Move it away, or give out= "
                                        r"a new folder"):
        run(tmp_path, keys(root, train, val, out))
    assert tree(out, root, tmp_path / "lists") == before

    (out / "annotations" / "train.txt").unlink()  # moved away: the folder's other files are left alone
    done = run(tmp_path, keys(root, train, val, out))
    assert not done["result"].failed and (out / "notes.md").read_text() == "mine too\n"
    assert (out / "annotations" / "train.txt").read_text() == "a.mp4 0\nb.mp4 1\nc.mp4 0\n"


def test_a_rerun_updates_its_own_output_and_nothing_else(vt, tmp_path):
    root = videos(vt, tmp_path / "videos")
    train, val = lists(tmp_path / "lists")
    out = tmp_path / "out"
    first = run(tmp_path, keys(root, train, val, out))["result"]
    assert len(first.entries) == 4 and first.done_before == 0 and (out / MANIFEST).is_file()

    train.write_text(TRAIN + "d.mp4 1\n")  # the dataset grew: the rerun rewrites the lists it wrote
    again = run(tmp_path, keys(root, train, val, out))["result"]
    assert again.done_before == 4 and len(again.entries) == 4
    assert (out / "annotations" / "train.txt").read_text() == "a.mp4 0\nb.mp4 1\nc.mp4 0\nd.mp4 1\n"

    # killed before its sidecar was written (SIGKILL): the videos it had renamed into place are its own
    (out / INDEX_NAME).unlink()
    redo = run(tmp_path, keys(root, train, val, out))["result"]
    assert redo.done_before == 0 and len(redo.entries) == 4 and VideoIndex.load(out) is not None

    # a list the user edited since is theirs now: refused, and kept
    (out / "annotations" / "val.txt").write_text("a.mp4 0\n# only a\n")
    with pytest.raises(DataError, match=rf"{out / 'annotations' / 'val.txt'} would be replaced, but prepare did "
                                        r"not write it \(or it changed since it did\)"):
        run(tmp_path, keys(root, train, val, out))
    assert (out / "annotations" / "val.txt").read_text() == "a.mp4 0\n# only a\n"

    # a copy of the prepared folder (cp -r: new mtimes, same content) is still prepare's own
    shutil.copytree(out, tmp_path / "copy", copy_function=shutil.copyfile)
    (tmp_path / "copy" / "annotations" / "val.txt").unlink()
    assert not run(tmp_path, keys(root, train, val, tmp_path / "copy"))["result"].failed


# ----------------------------------------------------------------------------------------------------
# defect 4: readable videos are kept


def noise_video(vt, path: Path, seed: int) -> Path:
    """Uniform noise: what x264 at crf 23 cannot keep within the pixel check (measured 13.5 > 12 at 64x48)."""
    frames = np.random.default_rng(seed).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    return vt.write_video(path, frames, "libx264", gop=250)


def luma(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)]).astype(np.int16)


def test_noise_videos_are_kept_and_the_summary_counts_each_split(vt, tmp_path, caplog):
    """Main left the noise videos out of the copy's lists with exit 0 (val/test shrank)."""
    root = videos(vt, tmp_path / "videos", names=("a", "b", "c", "d"))
    noise = [noise_video(vt, root / f"n{i}.mp4", i).name for i in range(4)]
    (root / "broken.mp4").write_text("not a video\n")
    train, val = lists(tmp_path / "lists", train="a.mp4 0\nb.mp4 1\nn0.mp4 0\nn1.mp4 1\nbroken.mp4 0\n",
                       val="c.mp4 0\nd.mp4 1\nn2.mp4 0\nn3.mp4 1\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="tanet_lightning"):
        done = run(tmp_path, keys(root, train, val, out, "short_side=48"))
    result = done["result"]
    assert sorted(result.failed) == ["broken.mp4"]  # the only unreadable video: the only one left out
    assert sorted(result.retried) == noise and all(kept.startswith("crf=") for kept, _ in result.retried.values())
    assert (out / "annotations" / "val.txt").read_text() == val.read_text()
    assert done["splits"] == {"train": (5, 4), "val": (4, 4), "test": (4, 4)}
    assert "videos per split, dataset -> copy: train 5 -> 4, val 4 -> 4, test 4 -> 4" in caplog.text
    assert "4 videos were not close enough to their source at crf=23" in caplog.text

    rows = [row.split("\t") for row in (out / RETRIED).read_text().splitlines()]
    assert rows[0] == ["split", "path", "kept", "reason"]
    assert sorted(Path(r[1]).name for r in rows[1:]) == noise
    assert all(r[3].startswith("at crf=23: frame ") and "differs from the source's" in r[3] for r in rows[1:])
    assert len((out / FAILED).read_text().splitlines()) == 2
    for name in noise:  # re-encoded (H.264, a keyframe every 4 frames), its luma close to the source's
        assert VideoIndex.load(out).lookup(out / name).key_frames.tolist() == [0, 4]
        copy, source = luma(out / name), luma(root / name)
        assert copy.shape == source.shape and np.abs(copy - source).mean() < 6  # measured: 4.2; crf=23: 8.5

    again = run(tmp_path, keys(root, train, val, out, "short_side=48"))["result"]  # resumed: still recorded
    assert again.done_before == 8 and sorted(again.retried) == noise and (out / RETRIED).is_file()


def test_a_copy_that_never_checks_out_keeps_the_source(vt, tmp_path, monkeypatch):
    src = noise_video(vt, tmp_path / "n.mp4", 0)
    monkeypatch.setattr(prepare_module, "MAX_MEAN_ERROR", -1.0)  # no re-encode can pass: lossless included
    done = prepare_video(src, tmp_path / "out" / "n.mp4", gop=4)
    assert done.kept == "source" and done.why.startswith("at crf=23: frame 0 of the copy differs")
    assert (tmp_path / "out" / "n.mp4").read_bytes() == src.read_bytes()
    assert done.entry.num_frames == probe_num_frames(src) == 6
