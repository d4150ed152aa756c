"""Annotation formats, multi-view expansion, flip label swapping, and bad-file accounting."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch.utils.data import DataLoader

from tanet_lightning.data import datasets, formats
from tanet_lightning.data.settings import ClipSettings

SMALL = dict(num_frames=4, short_side=24, crop_size=16)


def _dataset(records, tmp_path, mode="train", max_bad=1.0, flip_label_map=None, **kw):
    bad = datasets.BadFileLog(tmp_path / f"bad_{mode}.tsv", max_bad, len(records))
    return datasets.VideoClipDataset(records, mode, bad, ClipSettings(**{**SMALL, **kw}), flip_label_map=flip_label_map)


@pytest.fixture(scope="module")
def clips(vt, tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [
        vt.write_video(d / f"v{i}.mp4", vt.random_frames(12, 32, 40, seed=i), "libx264", gop=4)
        for i in range(6)
    ]


def test_video_list_and_rawframes(tmp_path, clips):
    (tmp_path / "list.txt").write_text("".join(f"{p.name} {i % 3}\n" for i, p in enumerate(clips)))
    recs = formats.read_video_list(tmp_path / "list.txt", clips[0].parent)
    assert [r.label for r in recs] == [0, 1, 2, 0, 1, 2] and os.path.isfile(recs[0].path)
    (tmp_path / "raw.txt").write_text("clip_a 30 4\nclip_b 12 7\n")
    raw = formats.read_rawframe_list(tmp_path / "raw.txt", "/frames")
    assert raw[1] == formats.VideoRecord("/frames/clip_b", 7, 12)
    (tmp_path / "bad.txt").write_text("only_a_path\n")
    with pytest.raises(formats.AnnotationError, match="bad.txt:1"):
        formats.read_video_list(tmp_path / "bad.txt", "/")


def test_kinetics_csv_classes_sorted_and_paths(tmp_path):
    rows = [
        "label,youtube_id,time_start,time_end,split",
        "zumba,aaa,10,20,train",
        '"air drumming",bbb,0,10,train',
        "abseiling,ccc,5.0,15.0,train",
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    names = formats.kinetics_class_names(tmp_path / "train.csv")
    assert names == ["abseiling", "air_drumming", "zumba"]
    recs = formats.read_kinetics_csv(
        tmp_path / "train.csv", "/k400", names, "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
    )
    assert recs[0] == formats.VideoRecord("/k400/train/aaa_000010_000020.mp4", 2)
    assert recs[2].path.endswith("ccc_000005_000015.mp4") and recs[1].label == 1
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nsurfing,x,0,10,val\n")
    with pytest.raises(formats.AnnotationError, match="unknown Kinetics class 'surfing'"):
        formats.read_kinetics_csv(tmp_path / "val.csv", "/k400", names, "{youtube_id}.mp4")


def test_sthv2_json(tmp_path):
    labels = {"Pushing something from left to right": "1", "Holding something": "0"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    items = [{"id": "42", "template": "Pushing [something] from left to right", "placeholders": ["a cup"]}]
    (tmp_path / "train.json").write_text(json.dumps(items))
    names = formats.sthv2_class_names(tmp_path / "labels.json")
    assert names == ["Holding something", "Pushing something from left to right"]
    assert formats.read_sthv2_json(tmp_path / "train.json", "/v2", names, "data.train_ann") == [
        formats.VideoRecord("/v2/42.webm", 1)
    ]
    (tmp_path / "val.json").write_text(json.dumps([{"id": "7", "template": "Dancing", "placeholders": []}]))
    with pytest.raises(formats.AnnotationError, match="unknown class 'Dancing'"):
        formats.read_sthv2_json(tmp_path / "val.json", "/v2", names, "data.val_ann")


def test_sthv1_csv_frame_folders_through_dataset(vt, tmp_path):
    (tmp_path / "labels.csv").write_text("Holding something\nTurning the camera left\n")
    (tmp_path / "train.csv").write_text("100;Turning the camera left\n101;Holding something\n")
    names = formats.read_class_names(tmp_path / "labels.csv")
    recs = formats.read_sthv1_csv(tmp_path / "train.csv", tmp_path / "frames", names, "data.train_ann")
    assert [r.label for r in recs] == [1, 0]
    for r in recs:
        vt.write_frame_folder(
            tmp_path / "frames" / os.path.basename(r.path), vt.random_frames(9, 32, 40), "{:05d}.jpg"
        )
    item = _dataset(recs, tmp_path, "val")[0]
    assert item["video"].shape == (4, 3, 16, 16) and item["label"] == 1
    (tmp_path / "val.csv").write_text("102;Juggling\n")
    with pytest.raises(formats.AnnotationError, match="val.csv:1: unknown class 'Juggling'"):
        formats.read_sthv1_csv(tmp_path / "val.csv", tmp_path, names, "data.val_ann")


def test_missing_annotation_names_the_key(tmp_path):
    with pytest.raises(formats.AnnotationError, match=r"data\.val_ann.*not found.*Set data\.val_ann="):
        formats.read_video_list(tmp_path / "missing.txt", "/", "data.val_ann")


def test_multi_view_items_cover_clips_x_crops(tmp_path, clips):
    recs = [formats.VideoRecord(str(p), i) for i, p in enumerate(clips[:3])]
    test = _dataset(recs, tmp_path, "test", test_views="2x3")
    assert len(test) == 3 * 6
    items = [test[i] for i in range(len(test))]
    assert [(it["video_idx"], it["view_idx"]) for it in items] == [(v, k) for v in range(3) for k in range(6)]
    assert all(it["label"] == it["video_idx"] for it in items)
    # crops of one clip share frames but differ in position; the two clips differ in time
    assert not torch.equal(items[0]["video"], items[1]["video"])
    assert not torch.equal(items[0]["video"], items[3]["video"])
    assert len(_dataset(recs, tmp_path, "val", test_views="2x3")) == 3  # val: one view


def test_flip_swaps_mapped_labels(tmp_path, clips):
    recs = [formats.VideoRecord(str(clips[0]), 2), formats.VideoRecord(str(clips[1]), 5)]
    torch.manual_seed(0)
    train = _dataset(recs, tmp_path, flip=True, flip_label_map={2: 4})
    labels = [train[i % 2]["label"] for i in range(80)]
    assert set(labels[0::2]) == {2, 4} and set(labels[1::2]) == {5}  # 5 is not in the map
    assert train.flip_label_map == {2: 4, 4: 2}
    no_flip = _dataset(recs, tmp_path, flip=False, flip_label_map={2: 4})
    assert {no_flip[0]["label"] for _ in range(20)} == {2}


def _with_bad_files(tmp_path, clips):
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(2000))
    (tmp_path / "truncated.mp4").write_bytes(clips[0].read_bytes()[:600])
    bad = [str(tmp_path / "missing.mp4"), str(tmp_path / "corrupt.mp4"), str(tmp_path / "truncated.mp4")]
    recs = [formats.VideoRecord(str(p), 0) for p in clips] + [formats.VideoRecord(p, 1) for p in bad]
    return recs, sorted(bad)


def test_bad_files_are_skipped_counted_and_logged_once(tmp_path, clips, caplog):
    recs, bad = _with_bad_files(tmp_path, clips)
    train = _dataset(recs, tmp_path, max_bad=0.5)
    for _ in range(2):  # two epochs: a known-bad file is not decoded or logged again
        items = [train[i] for i in range(len(train))]
        assert all(
            it["label"] == 0 and it["video_idx"] < len(clips) for it in items
        )  # replaced by good videos
    assert train.bad_files.paths() == bad
    assert sum("skipping unreadable video" in r.message for r in caplog.records) == 3


def test_bad_files_across_workers_and_error_past_fraction(tmp_path, clips):
    recs, bad = _with_bad_files(tmp_path, clips)
    train = _dataset(recs, tmp_path, max_bad=0.5)
    loader = DataLoader(train, batch_size=3, num_workers=2)
    assert sum(len(b["label"]) for b in loader) == len(recs)  # the epoch finishes
    assert train.bad_files.paths() == bad  # the parent sees what the workers logged
    (tmp_path / "strict").mkdir()
    strict = _dataset(
        recs, tmp_path / "strict", max_bad=0.2
    )  # 0.2 * 9 videos: the 2nd bad file stops the run
    with pytest.raises(datasets.TooManyBadFilesError, match="2 of 9 videos.*max_bad_fraction=0.2") as err:
        for i in range(len(strict)):
            strict[i]
    assert sum(p in str(err.value) for p in bad) == 2
