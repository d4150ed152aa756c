"""Annotation files: MMAction2 video and rawframe lists, the Kinetics CSVs, the Something-Something
label and split files, each read into ``VideoRecord`` lists. Every refusal is an ``AnnotationError``
naming the file and line (or JSON entry) and the expected form; class-index conventions are the ones
the peers' converted checkpoints assume (Kinetics: index in the sorted train labels; Sth-Sth V1: line
order of the labels file, so the flip map of the released models applies)."""


import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import DataError
from .files import read_text, text_lines

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_KEYS = {"train": "train_ann", "val": "val_ann", "test": "test_ann"}
KINETICS_PATH_TEMPLATE = "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


@dataclass(frozen=True)
class VideoRecord:
    path: str  # video file or frame folder
    label: int
    num_frames: int | None = None  # known for rawframe lists; None = counted when read


class AnnotationError(DataError):
    """An annotation file is missing or malformed, or names an unknown class."""


class DatasetNotFoundError(AnnotationError):
    """An annotation file does not exist: the dataset is not on this machine (or not where the config says)."""


# ----------------------------------------------------------------------------------------------------
# files and fields


def need_file(path: str | Path | None, key: str) -> Path:
    if path is None:
        raise DatasetNotFoundError(f"{key} is not set: annotation file not found. Set {key}=<path>.")
    p = Path(path)
    if not p.is_file():
        raise DatasetNotFoundError(
            f"{key}: annotation file not found: {p}. Set {key}=<path> (or TANET_DATA_DIR) to point at it."
        )
    return p


def _int_field(ann, n: int, line: str, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise AnnotationError(f"{ann}:{n}: {what} must be an integer, got {value!r} in {line!r}") from None


def read_class_names(path: str | Path, key: str = "data.classes") -> list[str]:
    """One class name per line (index = line number, blank lines and # comments skipped); names are unique."""
    names: dict[str, int] = {}
    for n, name in text_lines(need_file(path, key)):
        if name in names:
            raise AnnotationError(f"{path}:{n}: class {name!r} is also on line {names[name]}; "
                                  f"each class once, one per line")
        names[name] = n
    return list(names)


# a rawframe line read as a video list: "frames/abc 30 4" -> path "frames/abc 30"
_LOOKS_RAWFRAME = re.compile(r"^\S+\s+\d+$")


def read_video_list(ann: str | Path, root: str | Path, key: str = "data.train_ann") -> list[VideoRecord]:
    """``path label`` per line, split at the last whitespace so the path may contain spaces; a rawframe
    line ``frame_dir num_frames label`` is refused, not misread."""
    records = []
    for n, line in text_lines(need_file(ann, key)):
        parts = line.rsplit(None, 1)
        looks_raw = len(parts) == 2 and _LOOKS_RAWFRAME.match(parts[0]) \
            and not os.path.exists(os.path.join(root, parts[0]))
        if len(parts) != 2 or looks_raw:
            hint = " (a rawframe list 'frame_dir num_frames label'? set data.format=rawframes)" if looks_raw else ""
            raise AnnotationError(f"{ann}:{n}: expected 'path label' (format video_list), got {line!r}{hint}")
        records.append(VideoRecord(os.path.join(root, parts[0]), _int_field(ann, n, line, parts[1], "label")))
    return records


def read_rawframe_list(ann: str | Path, root: str | Path, key: str = "data.train_ann") -> list[VideoRecord]:
    """``frame_dir num_frames label`` per line (the folder name may contain spaces)."""
    records = []
    for n, line in text_lines(need_file(ann, key)):
        parts = line.rsplit(None, 2)
        if len(parts) != 3:
            hint = " (a video list 'path label'? set data.format=video_list)" if len(parts) == 2 else ""
            raise AnnotationError(
                f"{ann}:{n}: expected 'frame_dir num_frames label' (format rawframes), got {line!r}{hint}")
        frames = _int_field(ann, n, line, parts[1], "num_frames")
        label = _int_field(ann, n, line, parts[2], "label")
        records.append(VideoRecord(os.path.join(root, parts[0]), label, frames))
    return records


_K400_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _kinetics_rows(csv_path: Path) -> list[tuple[int, dict]]:
    """(line number, row) of a Kinetics CSV; the header names the columns, extra columns are kept."""
    lines = [(n, s) for n, s in text_lines(csv_path)]
    if not lines:
        return []
    rows = list(csv.reader([s for _, s in lines]))
    header = [h.strip() for h in rows[0]]
    if not set(_K400_COLUMNS) <= set(header):
        raise AnnotationError(f"{csv_path}:{lines[0][0]}: a Kinetics CSV needs the header columns "
                              f"{','.join(_K400_COLUMNS)}[,split]; found {header}")
    out = []
    for (n, line), row in zip(lines[1:], rows[1:]):
        if len(row) != len(header):
            raise AnnotationError(f"{csv_path}:{n}: {len(row)} fields, the header has {len(header)} "
                                  f"({','.join(header)}); got {line!r}")
        r = dict(zip(header, (v.strip() for v in row)))
        for k in ("time_start", "time_end"):
            try:
                r[k] = int(float(r[k]))
            except ValueError:
                raise AnnotationError(f"{csv_path}:{n}: {k} must be a number, got {r[k]!r}") from None
        out.append((n, r))
    return out


def _kinetics_name(label: str) -> str:
    return label.strip('"').replace(" ", "_")


def kinetics_class_names(train_csv: str | Path, key: str = "data.train_ann") -> list[str]:
    """Sorted set of train labels, spaces -> '_' and quotes stripped (mm convention)."""
    return sorted({_kinetics_name(r["label"]) for _, r in _kinetics_rows(need_file(train_csv, key))})


def read_kinetics_csv(ann: str | Path, root: str | Path, class_names: Sequence[str], path_template: str,
                      key: str = "data.val_ann") -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for n, r in _kinetics_rows(need_file(ann, key)):
        name = _kinetics_name(r["label"])
        if name not in index:
            raise AnnotationError(f"{ann}:{n}: unknown Kinetics class {r['label']!r} (not in the train CSV's labels)")
        try:
            rel = path_template.format(**{**r, "label": name, "split": r.get("split", "")})
        except (KeyError, ValueError, IndexError) as e:
            raise AnnotationError(f"data.path_template={path_template!r} does not fit {ann}:{n} ({e!r}); it may "
                                  f"use {{label}}, {{split}} and the CSV's columns") from None
        records.append(VideoRecord(os.path.join(root, rel), index[name]))
    return records


def _load_json(path: Path, key: str):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); {key} must be a "
                              f"Something-Something V2 JSON file") from None


def sthv2_class_names(labels_json: str | Path, key: str = "data.classes") -> list[str]:
    labels = _load_json(need_file(labels_json, key), key)
    form = 'a JSON object {"class name": "index", ...} (labels.json)'
    if not isinstance(labels, dict):
        raise AnnotationError(f"{labels_json}: expected {form}, got a JSON {type(labels).__name__}")
    index = {}
    for name, value in labels.items():
        try:
            index[name] = int(value)
        except (TypeError, ValueError):
            raise AnnotationError(f"{labels_json}: class {name!r}: index must be an integer, got {value!r}; "
                                  f"expected {form}") from None
    names = sorted(index, key=index.get)
    if [index[n] for n in names] != list(range(len(names))):
        raise AnnotationError(f"{labels_json}: class indices must be 0..{len(names) - 1}, each once")
    return names


def read_sthv2_json(ann: str | Path, root: str | Path, class_names: Sequence[str], key: str) -> list[VideoRecord]:
    items = _load_json(need_file(ann, key), key)
    form = 'a JSON list of {"id": "...", "template": "...", ...} (train.json / validation.json)'
    if not isinstance(items, list):
        raise AnnotationError(f"{ann}: expected {form}, got a JSON {type(items).__name__}")
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnnotationError(f"{ann}: entry {i}: expected an object, got {item!r}; the file must be {form}")
        for k in ("id", "template"):
            if not isinstance(item.get(k), str | int) or isinstance(item.get(k), bool):
                raise AnnotationError(f"{ann}: entry {i}: key {k!r} missing or not a string (got {item.get(k)!r}); "
                                      f"the file must be {form}")
        template = str(item["template"]).replace("[", "").replace("]", "")
        if template not in index:
            raise AnnotationError(f"{ann}: entry {i} (video {item['id']}): unknown class {template!r} "
                                  f"(not in the labels JSON)")
        records.append(VideoRecord(os.path.join(root, f"{item['id']}.webm"), index[template]))
    return records


def read_sthv1_csv(ann: str | Path, root: str | Path, class_names: Sequence[str], key: str) -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for n, line in text_lines(need_file(ann, key)):
        vid, sep, name = line.partition(";")
        if not sep or not vid.strip():
            raise AnnotationError(f"{ann}:{n}: expected 'video_id;class name' (format sthv1_csv), got {line!r}")
        if name not in index:
            raise AnnotationError(f"{ann}:{n}: unknown class {name!r} (not in the labels CSV)")
        records.append(VideoRecord(os.path.join(root, vid.strip()), index[name]))
    return records
