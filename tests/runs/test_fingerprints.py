"""Split fingerprints: which videos a number is of, in the run directory, metrics.json, the checkpoint and the
sweep report; eval and predict warn (not fail) when the data they are given differs, naming what is missing."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from tanet_lightning.analysis.report import report
from tanet_lightning.data.fingerprint import compare, fingerprint_split, unpack
from tanet_lightning.data.formats import VideoRecord
from tanet_lightning.eval import evaluate
from tanet_lightning.predict import predict
from tanet_lightning.train import train
from tinyconf import tiny_synthetic_dir

CLASSES = ["a", "b", "c"]


def records(root: Path, names: dict[str, int]) -> list[VideoRecord]:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    return [VideoRecord(str(root / n), label) for n, label in names.items()]


def test_ids_are_relative_to_the_root_and_found_counts_what_is_on_disk(tmp_path):
    videos = {"x/1.mp4": 0, "x/2.mp4": 1, "y/3.mp4": 2, "y/frames_4": 1}
    here, moved = (fingerprint_split(records(tmp_path / d, videos), tmp_path / d, CLASSES, {0: 1, 1: 0})
                   for d in ("here", "moved"))
    assert here == moved and here.annotated == here.found == 4 and here.unreadable is None
    assert unpack(here.packed) == sorted(videos.items())  # ids relative to the root, sorted
    assert not compare("val", here.to_dict(), moved, here.packed).messages

    (tmp_path / "moved" / "x" / "2.mp4").unlink()
    listed = [VideoRecord(str(tmp_path / "moved" / n), label) for n, label in videos.items()]
    fewer = fingerprint_split(listed, tmp_path / "moved", ["a", "c", "b"], {})
    assert (fewer.annotated, fewer.found) == (4, 3)
    diff = compare("val", here.to_dict(), fewer, here.packed, "out/missing_val.txt")
    assert diff.missing == ["x/2.mp4"] and not diff.extra
    assert diff.messages[0].startswith("val: 3 videos found vs 4 when this checkpoint was made (videos hash ")
    assert diff.messages[0].endswith("; 1 missing, list in out/missing_val.txt")
    assert "another class list (3 classes" in diff.messages[1] and "another flip label map" in diff.messages[2]
    # without the saved ids (not kept): the counts and hashes still say it
    assert compare("val", here.to_dict(), fewer).messages[0].endswith(f"vs {here.short})")


@pytest.mark.heavy  # a training and two evaluations: 5.6 s
def test_a_run_carries_its_fingerprints_and_eval_on_a_list_without_3_videos_names_them(make_cfg, data_dir,
                                                                                        tmp_path, caplog):
    metrics, objects = train(make_cfg())
    out = Path(objects["cfg"].paths.output_dir)
    written = json.loads((out / "metrics.json").read_text())["data_fingerprint"]
    assert written == metrics["data_fingerprint"] == json.loads((out / "fingerprint.json").read_text())
    test = written["test"]
    assert (test["annotated"], test["found"], test["unreadable"], test["num_classes"]) == (8, 8, 0, 8)
    assert written["train"]["found"] == 24 and len(test["videos_sha256"]) == 64
    ckpt = torch.load(objects["trainer"].checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
    saved = ckpt["data_fingerprint"]  # the key the HF export reads
    assert set(saved) == {"train", "val", "test"} and saved["test"]["videos_sha256"] == test["videos_sha256"]
    assert saved["test"]["unreadable"] is None  # saved during fit: the test split was not read yet
    assert len(unpack(ckpt["data_video_ids"]["test"])) == 8

    # the sweep report: a short hash of the test videos beside the numbers
    sweep = tmp_path / "sweep"
    shutil.copytree(out, sweep / "0", ignore=shutil.ignore_patterns("checkpoints"))
    md = report(sweep).read_text()
    assert f"`{test['videos_sha256'][:8]}` (8 videos)" in md
    assert test["videos_sha256"] in (sweep / "report.csv").read_text()

    # the same test videos as a list with 3 lines removed: a warning with the counts, the 3 named in a file
    root = tiny_synthetic_dir(data_dir)
    lines = (root / "test.txt").read_text().splitlines()
    (tmp_path / "test_minus_3.txt").write_text("\n".join(lines[3:]) + "\n")
    as_list = ["data=video_list", f"data.root={root}", f"data.train_ann={root}/train.txt",
               f"data.val_ann={root}/val.txt", f"data.test_ann={tmp_path}/test_minus_3.txt",
               f"data.classes={root}/classes.txt", "data.flip_label_map={0:1,4:5}", "data.num_frames=4",
               "data.short_side=32", "data.crop_size=32", "data.test_crop_size=32", "data.num_workers=0"]
    ckpt_path = objects["trainer"].checkpoint_callback.best_model_path
    cfg = make_cfg([f"ckpt_path={ckpt_path}", *as_list, "trainer.accelerator=cpu"], name="eval", tiny=False)
    caplog.set_level(logging.WARNING, "tanet_lightning")
    metrics, _ = evaluate(cfg)
    eval_dir = Path(cfg.paths.output_dir)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("test: ")]
    assert len(warnings) == 1, warnings  # the same classes and flip map: only the videos differ
    assert warnings[0].startswith("test: 5 videos found vs 8 in this checkpoint's run (5 annotated vs 8; ")
    assert f"3 missing, list in {eval_dir / 'missing_test.txt'}" in warnings[0]
    missing = (eval_dir / "missing_test.txt").read_text().split()
    assert missing == sorted(ln.split()[0] for ln in lines[:3])
    assert metrics["test/num_videos"] == 5 and metrics["data_fingerprint"]["test"]["found"] == 5

    # predict with a data config says the same, beside its predictions
    caplog.clear()
    video = root / lines[3].split()[0]
    pred = make_cfg([f"ckpt_path={ckpt_path}", f"inputs=[{video}]", "progress=false", "+data=video_list",
                     *as_list[1:]], name="predict", tiny=False)
    predict(pred)
    assert any("test: 5 videos found vs 8" in r.getMessage() for r in caplog.records)
    assert (Path(pred.out).parent / "missing_test.txt").read_text().split() == missing


def test_a_saved_fingerprint_in_another_layout_is_named_not_compared(tmp_path, caplog):
    """A checkpoint or Hub folder whose fingerprint lacks the hashes (another version's layout, a hand-edited
    config.json) is reported and skipped; it used to stop eval with a TypeError inside the comparison."""
    from tanet_lightning.runs.fingerprints import check_against_checkpoint

    current = fingerprint_split(records(tmp_path / "v", {"a/1.mp4": 0}), tmp_path / "v", CLASSES, {})
    raw = {"data_fingerprint": {"test": {"annotated": 1, "found": 1, "ids_sha256": "9f" * 32}}}
    with caplog.at_level(logging.WARNING):
        assert check_against_checkpoint(raw, current, "test", tmp_path, "ckpt.ckpt") == []
    assert "without videos_sha256, classes_sha256, flip_map_sha256" in caplog.text and "ckpt.ckpt" in caplog.text
    assert not list(tmp_path.glob("missing_*.txt"))
