"""Dataset formats: one reader per format, in one table (``FORMATS``).

A reader turns a ``Source`` (where the files are, from the ``data.*`` keys) into class names (in label
order) and a split's ``VideoRecord`` list. Adding a format = one ``Reader`` subclass + one table entry.

Formats (class-index conventions from notes/reference_impl.md section 5):
* video_list   ``relative/path.mp4 label`` (MMAction2 video list; the path may contain spaces);
               class names from an optional file, else 0..max train label.
* rawframes    ``frame_dir num_frames label`` (MMAction2 / TSN rawframe list).
* kinetics_csv ``label,youtube_id,time_start,time_end,split``; class = index in the sorted train labels.
* sthv2_json   labels JSON {template: "idx"} + list of {id, template, ...}; videos ``<id>.webm``.
* sthv1_csv    labels CSV (one name per line, index = line order as in mm, so the mm flip map applies)
               + ``id;class name`` CSVs; frames in ``<id>/00001.jpg ...``.
* video_folder ``<root>/<class>/**/*.mp4`` or ``<root>/{train,val,test}/<class>/...``; classes = sorted
               folder names; hidden/system entries skipped; no annotation files.
* synthetic    the embedded motion videos (synthetic.py), generated per settings under ``<root>/<variant>``.

Every refusal is a ``DataError`` naming the file (and line, or JSON entry) or key, with the expected form.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..base.errors import DataError
from .files import VIDEO_EXTENSIONS, describe_ignored, find_videos, is_hidden, read_text, text_lines
from .synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir
from .synthetic import class_names as synthetic_classes
from .synthetic import flip_label_map as synthetic_flip_map

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


@dataclass(frozen=True)
class Source:
    """Where a dataset's files are (the ``data.*`` keys a reader needs)."""

    format: str
    root: Path
    ann: dict[str, str | None] = field(default_factory=dict)  # split -> annotation file (test: val's if unset)
    ann_keys: dict[str, str] = field(default_factory=dict)  # split -> the data.* key that gave it
    classes: str | None = None
    path_template: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    synthetic: SyntheticSpec = SyntheticSpec()

    def ann_file(self, split: str) -> tuple[str, str]:
        """(annotation file, its data.* key) of a split; a missing file is a DatasetNotFoundError."""
        key = self.ann_keys[split]
        _need_file(self.ann[split], key)
        return self.ann[split], key

    def need_classes(self) -> str:
        if self.classes is None:
            raise AnnotationError(f"data.classes is not set; format={self.format} needs its labels file. "
                                  f"Set data.classes=<path>")
        return self.classes


# ----------------------------------------------------------------------------------------------------
# files and fields


def _need_file(path: str | Path | None, key: str) -> Path:
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
    for n, name in text_lines(_need_file(path, key)):
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
    for n, line in text_lines(_need_file(ann, key)):
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
    for n, line in text_lines(_need_file(ann, key)):
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
    return sorted({_kinetics_name(r["label"]) for _, r in _kinetics_rows(_need_file(train_csv, key))})


def read_kinetics_csv(ann: str | Path, root: str | Path, class_names: Sequence[str], path_template: str,
                      key: str = "data.val_ann") -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for n, r in _kinetics_rows(_need_file(ann, key)):
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
    labels = _load_json(_need_file(labels_json, key), key)
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
    items = _load_json(_need_file(ann, key), key)
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
    for n, line in text_lines(_need_file(ann, key)):
        vid, sep, name = line.partition(";")
        if not sep or not vid.strip():
            raise AnnotationError(f"{ann}:{n}: expected 'video_id;class name' (format sthv1_csv), got {line!r}")
        if name not in index:
            raise AnnotationError(f"{ann}:{n}: unknown class {name!r} (not in the labels CSV)")
        records.append(VideoRecord(os.path.join(root, vid.strip()), index[name]))
    return records


# ----------------------------------------------------------------------------------------------------
# video_folder: DIR/<class name>/**/*.mp4, optionally inside DIR/{train,val,test}/ (a user's own videos).
# Nested folders inside a class folder are read: people sort a class's videos by date, camera or source,
# and the class is still the top-level folder.

_FOLDER_LAYOUT = "<root>/<class name>/*.mp4 (or <root>/train|val|test/<class name>/*.mp4)"


def _need_dir(path: str | Path, key: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DatasetNotFoundError(f"{key}={path}: no such folder; format video_folder reads {_FOLDER_LAYOUT}")
    return p


def _class_dirs(base: Path) -> list[str]:
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not is_hidden(d.name))


def scan_class_folders(base: Path, key: str = "data.root", report: bool = True) -> dict[str, list[str]]:
    """{class name: its videos} of the class folders in ``base``; an empty class folder is refused and
    files that are not videos are counted in the log (``report``)."""
    videos, ignored = {}, []
    for name in _class_dirs(base):
        found = find_videos(base / name)
        if not found.videos:
            holds = describe_ignored(found.ignored) if found.ignored else "nothing"
            raise AnnotationError(f"{key}: class folder {base / name} holds no videos (it holds {holds}); "
                                  f"add videos ({' '.join(VIDEO_EXTENSIONS)}) or remove the folder")
        videos[name] = found.videos
        ignored += found.ignored
    loose = [str(f) for f in base.iterdir() if f.is_file() and not is_hidden(f.name)]
    if ignored and report:
        log.warning("%s: ignored %s that are not videos", base, describe_ignored(ignored))
    if loose and report:
        log.warning("%s: ignored %s outside any class folder", base, describe_ignored(loose))
    return videos


def _split_base(root: Path) -> Path | None:
    """root/train when the split folders exist (then train/ gives the class names)."""
    return root / "train" if (root / "train").is_dir() else None


def video_folder_classes(root: str | Path, key: str = "data.root") -> list[str]:
    """Sorted class-folder names (of root/train when the split folders exist)."""
    root = _need_dir(root, key)
    base = _split_base(root) or root
    names = list(scan_class_folders(base, key))
    if not names:
        raise AnnotationError(f"{key}={root}: no class folders in {base} (expected {_FOLDER_LAYOUT})")
    return names


def read_video_folder(root: str | Path, split: str, class_names: Sequence[str], val_fraction: float = 0.2,
                      seed: int = 0, key: str = "data.root") -> list[VideoRecord]:
    """Records of one split: from root/<split>/ when root/train exists (test falls back to val), else a
    seeded per-class split of root/<class>/ (val_fraction to val, which is also the test split)."""
    root = _need_dir(root, key)
    if _split_base(root) is not None:
        folder = root / split if (root / split).is_dir() or split != "test" else root / "val"
        _need_dir(folder, f"{key} (split folder)")
        unknown = sorted(set(_class_dirs(folder)) - set(class_names))
        if unknown:
            raise AnnotationError(f"{folder}: class folders {unknown} are not in {root / 'train'}; "
                                  f"every class needs training videos")
        found = scan_class_folders(folder, key, report=split != "train")  # train/ was read for the names
        return [VideoRecord(p, i) for i, c in enumerate(class_names) for p in found.get(c, [])]
    if not 0.0 < val_fraction < 1.0:
        raise AnnotationError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    found = scan_class_folders(root, key, report=False)  # reported when the class names were read
    records = []
    for i, c in enumerate(class_names):
        videos = found.get(c, [])
        order = np.random.default_rng([seed, i]).permutation(len(videos))
        n_val = min(max(1, round(val_fraction * len(videos))), len(videos) - 1) if len(videos) > 1 else 0
        chosen = order[:n_val] if split != "train" else order[n_val:]
        records += [VideoRecord(videos[j], i) for j in sorted(chosen)]
    return records


# ----------------------------------------------------------------------------------------------------
# the table


class Reader:
    """One format. ``records`` of a split, ``class_names`` in label order; ``locate``/``prepare`` for
    formats whose files are made, not found (synthetic)."""

    annotated = True  # reads train_ann/val_ann[/test_ann] files
    flip_label_map: dict[int, int] = {}  # default data.flip_label_map

    def flip_map(self, source: Source) -> dict[int, int]:
        return self.flip_label_map

    def locate(self, source: Source) -> Source:
        return source

    def prepare(self, source: Source) -> None:
        pass

    def class_names(self, source: Source) -> list[str]:
        return read_class_names(source.need_classes())

    def records(self, source: Source, split: str, class_names: Sequence[str]) -> list[VideoRecord]:
        raise NotImplementedError


class VideoList(Reader):
    def class_names(self, source):
        if source.classes is not None:
            return read_class_names(source.classes)
        # no class file: classes 0..max label of the train list
        records = self.records(source, "train", ())
        if not records:
            ann, key = source.ann_file("train")
            raise DataError(f"the train split is empty: {ann} ({key}) lists no videos; add 'path label' lines")
        return [str(i) for i in range(max(r.label for r in records) + 1)]

    def records(self, source, split, class_names):
        ann, key = source.ann_file(split)
        return read_video_list(ann, source.root, key)


class RawFrames(VideoList):
    def records(self, source, split, class_names):
        ann, key = source.ann_file(split)
        return read_rawframe_list(ann, source.root, key)


class KineticsCSV(Reader):
    def class_names(self, source):
        return kinetics_class_names(*source.ann_file("train"))

    def records(self, source, split, class_names):
        ann, key = source.ann_file(split)
        return read_kinetics_csv(ann, source.root, class_names, source.path_template or KINETICS_PATH_TEMPLATE, key)


class SthV1CSV(Reader):
    def records(self, source, split, class_names):
        ann, key = source.ann_file(split)
        return read_sthv1_csv(ann, source.root, class_names, key)


class SthV2JSON(Reader):
    def class_names(self, source):
        return sthv2_class_names(source.need_classes())

    def records(self, source, split, class_names):
        ann, key = source.ann_file(split)
        return read_sthv2_json(ann, source.root, class_names, key)


class VideoFolder(Reader):
    annotated = False

    def class_names(self, source):
        return video_folder_classes(source.root)

    def records(self, source, split, class_names):
        return read_video_folder(source.root, split, class_names, source.val_fraction, source.split_seed)


class Synthetic(VideoList):
    annotated = False

    def flip_map(self, source):
        return synthetic_flip_map(source.synthetic.task)  # each task's own pairs

    def locate(self, source):
        root = synthetic_dir(source.root, source.synthetic)  # one directory per variant of the settings
        return replace(source, root=root, ann={s: str(root / f"{s}.txt") for s in SPLITS})

    def prepare(self, source):
        ensure_synthetic(source.root, source.synthetic)

    def class_names(self, source):
        return synthetic_classes(source.synthetic.task)


FORMATS: dict[str, Reader] = {
    "synthetic": Synthetic(),
    "video_list": VideoList(),
    "rawframes": RawFrames(),
    "kinetics_csv": KineticsCSV(),
    "sthv1_csv": SthV1CSV(),
    "sthv2_json": SthV2JSON(),
    "video_folder": VideoFolder(),
}
