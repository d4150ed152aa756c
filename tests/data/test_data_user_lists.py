"""Annotation files as users have them: spaces in paths, BOMs, Windows and old-Mac line ends, Latin-1,
comments; and malformed ones refused naming file:line (or the JSON entry) and the expected form."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tanet_lightning.base.errors import DataError
from tanet_lightning.data import VideoDataModule
from tanet_lightning.data import formats as fm


@pytest.fixture(scope="module")
def clip(vt, tmp_path_factory) -> Path:
    return vt.write_video(tmp_path_factory.mktemp("clip") / "c.mp4", vt.random_frames(8, 32, 32), "libx264", gop=4)


def _names(records, root) -> list[tuple[str, int]]:
    return [(str(Path(r.path).relative_to(root)), r.label) for r in records]


def test_video_list_paths_with_spaces_bom_crlf_comments(tmp_path, clip):
    for name in ("my clip.mp4", "holiday 2023/day 1 (2).mp4", "plain.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / name)
    text = "# path label\r\nmy clip.mp4 0\r\n\r\nholiday 2023/day 1 (2).mp4\t1\r\n  plain.mp4   2  \r\n"
    (tmp_path / "train.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert _names(fm.read_video_list(tmp_path / "train.txt", tmp_path), tmp_path) == \
        [("my clip.mp4", 0), ("holiday 2023/day 1 (2).mp4", 1), ("plain.mp4", 2)]
    (tmp_path / "val.txt").write_bytes(b"my clip.mp4 1\rplain.mp4 0\r")  # old Mac: CR alone
    val = fm.read_video_list(tmp_path / "val.txt", tmp_path)
    assert _names(val, tmp_path) == [("my clip.mp4", 1), ("plain.mp4", 0)]
    dm = VideoDataModule(tmp_path, format="video_list", root=str(tmp_path), train_ann=str(tmp_path / "train.txt"),
                         val_ann=str(tmp_path / "val.txt"), num_frames=4, short_side=32, crop_size=32,
                         batch_size=1, num_workers=0)
    assert dm.class_names == ["0", "1", "2"]
    dm.setup("fit")
    assert dm.datasets["train"][0]["valid"] and dm.bad_files() == []


def test_latin1_and_utf16_lists(tmp_path, clip, caplog):
    shutil.copy(clip, tmp_path / "café 1.mp4")
    (tmp_path / "latin1.txt").write_bytes("café 1.mp4 3\n".encode("latin-1"))
    assert _names(fm.read_video_list(tmp_path / "latin1.txt", tmp_path), tmp_path) == [("café 1.mp4", 3)]
    assert any("latin1.txt is not UTF-8" in r.getMessage() for r in caplog.records)
    (tmp_path / "utf16.txt").write_bytes("café 1.mp4 2\r\n".encode("utf-16"))  # Notepad's "Unicode"
    assert _names(fm.read_video_list(tmp_path / "utf16.txt", tmp_path), tmp_path) == [("café 1.mp4", 2)]
    (tmp_path / "classes.txt").write_bytes("# names\r\nnaïve\r\n\r\nJosé\r\n".encode("latin-1"))
    assert fm.read_class_names(tmp_path / "classes.txt") == ["naïve", "José"]


def test_rawframe_lists_with_spaces_and_malformed_lines(tmp_path):
    (tmp_path / "raw.txt").write_text("\ufeffframes/clip one 30 4\nframes/two 12 1\n", encoding="utf-8")
    assert fm.read_rawframe_list(tmp_path / "raw.txt", "/d") == [
        fm.VideoRecord("/d/frames/clip one", 4, 30), fm.VideoRecord("/d/frames/two", 1, 12)]
    (tmp_path / "bad.txt").write_text("a 1 2\n\n# c\nb x 2\n")
    with pytest.raises(DataError, match=r"bad\.txt:4: num_frames must be an integer"):
        fm.read_rawframe_list(tmp_path / "bad.txt", "/d")


@pytest.mark.parametrize("line, message", [
    ("only_a_path.mp4", r"list\.txt:2: expected 'path label' \(format video_list\)"),
    ("a clip.mp4 x", r"list\.txt:2: label must be an integer, got 'x'"),
    ("frames/abc 30 4", r"list\.txt:2: expected 'path label'.*set data\.format=rawframes"),
])
def test_malformed_video_list_lines_name_file_line_and_form(tmp_path, line, message):
    (tmp_path / "list.txt").write_text(f"ok.mp4 1\n{line}\n")
    with pytest.raises(DataError, match=message):
        fm.read_video_list(tmp_path / "list.txt", tmp_path)


def test_kinetics_csv_with_bom_crlf_and_malformed_rows(tmp_path):
    text = 'label,youtube_id,time_start,time_end,split\r\n"air drumming",a b,1,11,train\r\n\r\nzumba,c,0.0,10,train\r\n'
    (tmp_path / "train.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    names = fm.kinetics_class_names(tmp_path / "train.csv")
    assert names == ["air_drumming", "zumba"]
    recs = fm.read_kinetics_csv(tmp_path / "train.csv", "/k", names, fm.KINETICS_PATH_TEMPLATE)
    assert recs == [fm.VideoRecord("/k/train/a b_000001_000011.mp4", 0),
                    fm.VideoRecord("/k/train/c_000000_000010.mp4", 1)]
    (tmp_path / "short.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,c,0\n")
    with pytest.raises(DataError, match=r"short\.csv:2: 3 fields, the header has 5"):
        fm.read_kinetics_csv(tmp_path / "short.csv", "/k", names, fm.KINETICS_PATH_TEMPLATE)
    (tmp_path / "nan.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,c,start,10,val\n")
    with pytest.raises(DataError, match=r"nan\.csv:2: time_start must be a number, got 'start'"):
        fm.read_kinetics_csv(tmp_path / "nan.csv", "/k", names, fm.KINETICS_PATH_TEMPLATE)


@pytest.mark.parametrize("content, message", [
    ('[{"id": "1", "template": "Doing x"},\n {"id": "2" "template": "Doing x"}]',
     r"train\.json:2:\d+: not valid JSON.*data\.train_ann"),
    ('{"id": "1", "template": "Doing x"}', r"train\.json: expected a JSON list of \{\"id\""),
    ('[{"id": "1", "template": "Doing x"}, {"id": "2"}]', r"train\.json: entry 1: key 'template' missing"),
    ('[{"id": "1", "template": "Doing x"}, "3"]', r"train\.json: entry 1: expected an object"),
    ('[{"template": "Doing x"}]', r"train\.json: entry 0: key 'id' missing"),
    ("", r"train\.json:1:1: not valid JSON"),
])
def test_malformed_something_something_json_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "train.json").write_text(content)
    with pytest.raises(DataError, match=message):
        fm.read_sthv2_json(tmp_path / "train.json", "/v2", ["Doing x"], "data.train_ann")


def test_malformed_something_something_labels_and_v1_lines(tmp_path):
    (tmp_path / "labels.json").write_text('{"Doing x": "0", "Doing y": "one"}')
    with pytest.raises(DataError, match=r"labels\.json: class 'Doing y': index must be an integer"):
        fm.sthv2_class_names(tmp_path / "labels.json")
    (tmp_path / "labels.json").write_text('["Doing x"]')
    with pytest.raises(DataError, match=r"labels\.json: expected a JSON object"):
        fm.sthv2_class_names(tmp_path / "labels.json")
    (tmp_path / "v1.csv").write_text("1;Doing x\r\n2 Doing x\r\n")
    with pytest.raises(DataError, match=r"v1\.csv:2: expected 'video_id;class name'"):
        fm.read_sthv1_csv(tmp_path / "v1.csv", "/v1", ["Doing x"], "data.train_ann")
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"classes\.txt:3: class 'a' is also on line 1"):
        fm.read_class_names(tmp_path / "classes.txt")
