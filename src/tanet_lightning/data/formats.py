"""Dataset formats: one reader per format, in one table (``FORMATS``).

A reader turns a ``Source`` (where the files are, from the ``data.*`` keys) into class names (in label
order) and a split's ``VideoRecord`` list. Adding a format = one ``Reader`` subclass + one table entry.

Formats (files parsed in ``annotations.py``, class folders scanned in ``class_folders.py``):
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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..base.errors import DataError
from .annotations import (
    KINETICS_PATH_TEMPLATE,
    SPLIT_KEYS,
    SPLITS,
    AnnotationError,
    DatasetNotFoundError,
    VideoRecord,
    kinetics_class_names,
    need_file,
    read_class_names,
    read_kinetics_csv,
    read_rawframe_list,
    read_sthv1_csv,
    read_sthv2_json,
    read_video_list,
    sthv2_class_names,
)
from .class_folders import read_video_folder, scan_class_folders, video_folder_classes
from .files import text_lines
from .synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir
from .synthetic import class_names as synthetic_classes
from .synthetic import flip_label_map as synthetic_flip_map

__all__ = ["FORMATS", "KINETICS_PATH_TEMPLATE", "SPLITS", "SPLIT_KEYS", "AnnotationError", "DatasetNotFoundError",
           "Reader", "Source", "VideoRecord", "read_class_names", "read_video_list", "read_rawframe_list",
           "kinetics_class_names", "read_kinetics_csv", "sthv2_class_names", "read_sthv2_json", "read_sthv1_csv",
           "scan_class_folders", "video_folder_classes", "read_video_folder", "text_lines"]


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
        need_file(self.ann[split], key)
        return self.ann[split], key

    def need_classes(self) -> str:
        if self.classes is None:
            raise AnnotationError(f"data.classes is not set; format={self.format} needs its labels file. "
                                  f"Set data.classes=<path>")
        return self.classes


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
