"""Annotation formats -> VideoRecord lists, and the map-style clip dataset.

Formats (class-index conventions from notes/reference_impl.md section 5):
* video_list   `relative/path.mp4 label` (MMAction2 video list); class names from an optional file.
* rawframes    `frame_dir num_frames label` (MMAction2 / TSN rawframe list).
* kinetics_csv `label,youtube_id,time_start,time_end,split`; class = index in the sorted train labels.
* sthv2_json   labels JSON {template: "idx"} + list of {id, template, ...}; videos `<id>.webm`.
* sthv1_csv    labels CSV (one name per line, index = line order as in mm, so the mm flip map applies)
               + `id;class name` CSVs; frames in `<id>/00001.jpg ...`.

The dataset keeps only paths and labels (no open containers: see io.py), is map-style so Lightning can
shard it with a DistributedSampler, and turns the test split into clips x crops items carrying
(video_idx, view_idx) so predictions can be averaged per video after an all-gather.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..base.errors import DataError
from .io import VideoDecodeError, read_video_frames
from .sampling import ClipSampler
from .transforms import eval_transform, train_transform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRecord:
    path: str  # video file or frame folder
    label: int
    num_frames: int | None = None  # known for rawframe lists; None = counted when read


class AnnotationError(DataError):
    """An annotation file is missing or malformed, or names an unknown class."""


class DatasetNotFoundError(AnnotationError):
    """An annotation file does not exist: the dataset is not on this machine (or not where the config says)."""


def _need_file(path: str | Path, key: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DatasetNotFoundError(
            f"{key}: annotation file not found: {p}. Set {key}=<path> (or TANET_DATA_DIR) to point at it."
        )
    return p


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def read_class_names(path: str | Path, key: str = "data.classes") -> list[str]:
    """One class name per line (index = line number)."""
    return _lines(_need_file(path, key))


def _int_field(ann, n: int, line: str, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise AnnotationError(f"{ann}:{n}: {what} must be an integer, got {value!r} in {line!r}") from None


def read_video_list(ann: str | Path, root: str | Path, key: str = "data.train_ann") -> list[VideoRecord]:
    """``path label`` per line, exactly two fields: a three-field rawframe line is refused, not misread."""
    records = []
    for n, line in enumerate(_lines(_need_file(ann, key)), 1):
        parts = line.split()
        if len(parts) != 2:
            hint = (" (a rawframe list 'frame_dir num_frames label'? set data.format=rawframes)"
                    if len(parts) == 3 else "")
            raise AnnotationError(f"{ann}:{n}: expected 'path label' (format video_list), got {line!r}{hint}")
        records.append(VideoRecord(os.path.join(root, parts[0]), _int_field(ann, n, line, parts[1], "label")))
    return records


def read_rawframe_list(ann: str | Path, root: str | Path, key: str = "data.train_ann") -> list[VideoRecord]:
    """``frame_dir num_frames label`` per line, exactly three integer-checked fields."""
    records = []
    for n, line in enumerate(_lines(_need_file(ann, key)), 1):
        parts = line.split()
        if len(parts) != 3:
            hint = " (a video list 'path label'? set data.format=video_list)" if len(parts) == 2 else ""
            raise AnnotationError(
                f"{ann}:{n}: expected 'frame_dir num_frames label' (format rawframes), got {line!r}{hint}")
        frames = _int_field(ann, n, line, parts[1], "num_frames")
        label = _int_field(ann, n, line, parts[2], "label")
        records.append(VideoRecord(os.path.join(root, parts[0]), label, frames))
    return records


def _kinetics_rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"label", "youtube_id", "time_start", "time_end"}
    if rows and not need <= set(rows[0]):
        raise AnnotationError(f"{csv_path}: Kinetics CSV needs columns {sorted(need)}, found {list(rows[0])}")
    return rows


def kinetics_class_names(train_csv: str | Path, key: str = "data.train_ann") -> list[str]:
    """Sorted set of train labels, spaces -> '_' and quotes stripped (mm convention)."""
    return sorted(
        {r["label"].strip('"').replace(" ", "_") for r in _kinetics_rows(_need_file(train_csv, key))}
    )


def read_kinetics_csv(
    ann: str | Path,
    root: str | Path,
    class_names: Sequence[str],
    path_template: str,
    key: str = "data.val_ann",
) -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for r in _kinetics_rows(_need_file(ann, key)):
        name = r["label"].strip('"').replace(" ", "_")
        if name not in index:
            raise AnnotationError(
                f"{ann}: unknown Kinetics class {r['label']!r} (not in the train CSV's labels)"
            )
        rel = path_template.format(
            label=name,
            youtube_id=r["youtube_id"],
            split=r.get("split", ""),
            time_start=int(float(r["time_start"])),
            time_end=int(float(r["time_end"])),
        )
        records.append(VideoRecord(os.path.join(root, rel), index[name]))
    return records


def sthv2_class_names(labels_json: str | Path, key: str = "data.classes") -> list[str]:
    labels = json.loads(_need_file(labels_json, key).read_text())
    names = sorted(labels, key=lambda t: int(labels[t]))
    if [int(labels[n]) for n in names] != list(range(len(names))):
        raise AnnotationError(f"{labels_json}: class indices must be 0..{len(names) - 1}")
    return names


def read_sthv2_json(
    ann: str | Path, root: str | Path, class_names: Sequence[str], key: str
) -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for item in json.loads(_need_file(ann, key).read_text()):
        template = item["template"].replace("[", "").replace("]", "")
        if template not in index:
            raise AnnotationError(
                f"{ann}: video {item['id']}: unknown class {template!r} (not in the labels JSON)"
            )
        records.append(VideoRecord(os.path.join(root, f"{item['id']}.webm"), index[template]))
    return records


def read_sthv1_csv(
    ann: str | Path, root: str | Path, class_names: Sequence[str], key: str
) -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for n, line in enumerate(_lines(_need_file(ann, key)), 1):
        vid, _, name = line.partition(";")
        if name not in index:
            raise AnnotationError(f"{ann}:{n}: unknown class {name!r} (not in the labels CSV)")
        records.append(VideoRecord(os.path.join(root, vid), index[name]))
    return records


# ----------------------------------------------------------------------------------------------------
# bad-file accounting shared by DataLoader workers (separate processes): one append-only log file;
# single short writes with O_APPEND do not interleave, so no lock is needed.


class TooManyBadFilesError(RuntimeError):
    pass


class BadFileLog:
    def __init__(self, path: str | Path, max_fraction: float, total: int):
        self.path, self.max_fraction, self.total = str(path), max_fraction, total
        self._seen: set[str] = set()  # per worker: skip known-bad files without re-decoding

    def paths(self) -> list[str]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return sorted({ln.split("\t", 1)[0] for ln in f if ln.strip()})

    def known(self, path: str) -> bool:
        return path in self._seen

    def add(self, path: str, reason: str) -> None:
        self._seen.add(path)
        already = self.paths()
        if path not in already:
            log.warning("skipping unreadable video %s: %s", path, reason)
            with open(self.path, "a") as f:
                f.write(f"{path}\t{reason.replace(chr(10), ' ')[:300]}\n")
            already.append(path)
        if len(already) > self.max_fraction * self.total:
            shown = "\n  ".join(already)  # every one found so far: the user fixes them all at once
            raise TooManyBadFilesError(
                f"{len(already)} of {self.total} videos are missing or unreadable, more than "
                f"data.max_bad_fraction={self.max_fraction}. Fix or remove them from the annotation file "
                f"(full list with reasons in {self.path}):\n  {shown}"
            )


# ----------------------------------------------------------------------------------------------------


class VideoClipDataset(Dataset):
    """Map-style clip dataset. Items: {video uint8 (T,3,S,S), label, video_idx, view_idx}.

    mode "train": one random clip + multi-scale crop + flip per item; "val": one centre clip, centre
    crop; "test": len = videos x clips x crops, item i = (video i // views, view i % views) with
    view = clip * num_crops + crop.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampler: ClipSampler,
        mode: str,
        bad_files: BadFileLog,
        short_side: int | None = 256,
        crop_size: int = 224,
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        flip: bool = True,
        flip_label_map: dict[int, int] | None = None,
        test_clips: int = 1,
        test_crops: int = 1,
        frame_template: str = "{:05d}.jpg",
        start_index: int = 1,
        max_retries: int = 10,
    ):
        if mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be train/val/test, got {mode!r}")
        if not records:
            raise AnnotationError(f"the {mode} split has no videos")
        self.records, self.sampler, self.mode, self.bad_files = list(records), sampler, mode, bad_files
        self.short_side, self.crop_size, self.scales, self.max_distort = (
            short_side,
            crop_size,
            tuple(scales),
            max_distort,
        )
        self.flip = flip
        self.flip_label_map = {**(flip_label_map or {}), **{v: k for k, v in (flip_label_map or {}).items()}}
        self.clips, self.crops = (test_clips, test_crops) if mode == "test" else (1, 1)
        self.frame_template, self.start_index, self.max_retries = frame_template, start_index, max_retries
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = (
            None  # last decoded test clip (crops reuse it)
        )

    def __len__(self) -> int:
        return len(self.records) * self.clips * self.crops

    def _indices(self, clip: int, rng: np.random.Generator):
        if self.mode == "train":
            return lambda n: self.sampler.train(n, rng)
        if self.mode == "val":
            return self.sampler.val
        return lambda n: self.sampler.test(n, self.clips)[clip]

    def _load(self, video_idx: int, view: int, rng: np.random.Generator) -> dict:
        rec = self.records[video_idx]
        clip, crop = divmod(view, self.crops)
        if self._cache is not None and self._cache[0] == (video_idx, clip):
            frames = self._cache[1]
        else:
            frames = read_video_frames(
                rec.path,
                self._indices(clip, rng),
                self.short_side,
                frame_template=self.frame_template,
                start_index=self.start_index,
                num_frames=rec.num_frames,
            )
            if self.crops > 1:
                self._cache = ((video_idx, clip), frames)
        label = rec.label
        if self.mode == "train":
            video, flipped = train_transform(
                frames, rng, self.crop_size, self.scales, self.max_distort, self.flip
            )
            if flipped:
                label = self.flip_label_map.get(label, label)
        else:
            video = eval_transform(frames, self.crop_size, crop, self.crops)
        return {"video": video, "label": label, "video_idx": video_idx, "view_idx": view}

    def __getitem__(self, i: int) -> dict:
        # Randomness comes from torch's RNG, which Lightning's seed_everything(workers=True) and the
        # DataLoader's per-worker seeding make reproducible; numpy's global state is never used.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        video_idx, view = divmod(i, self.clips * self.crops)
        for _ in range(self.max_retries + 1):
            path = self.records[video_idx].path
            if not self.bad_files.known(path):
                try:
                    return {**self._load(video_idx, view, rng), "valid": True}
                except (VideoDecodeError, OSError) as e:  # file problems only; bugs still raise
                    self.bad_files.add(path, f"{type(e).__name__}: {e}")
            if self.mode != "train":
                # evaluation never substitutes another video (a duplicate would bias val/top1 and the
                # best-checkpoint choice): an invalid item that the LightningModule leaves out
                size = self.crop_size
                video = torch.zeros(self.sampler.num_frames, 3, size, size, dtype=torch.uint8)
                return {"video": video, "label": self.records[video_idx].label, "video_idx": video_idx,
                        "view_idx": view, "valid": False}
            video_idx = int(rng.integers(len(self.records)))  # training: another random video instead
        raise TooManyBadFilesError(
            f"{self.max_retries + 1} videos in a row were unreadable (last: {path}); "
            f"see {self.bad_files.path}"
        )


# ----------------------------------------------------------------------------------------------------
# video_folder: DIR/<class name>/*.mp4, optionally inside DIR/{train,val,test}/ (a user's own videos).

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")


def _need_dir(path: str | Path, key: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DatasetNotFoundError(f"{key}={path}: no such folder; format video_folder reads <root>/<class name>/*.mp4 "
                                   f"(optionally <root>/train|val|test/<class name>/*.mp4)")
    return p


def _class_videos(folder: Path) -> list[str]:
    return sorted(str(f) for f in folder.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)


def video_folder_classes(root: str | Path, key: str = "data.root") -> list[str]:
    """Sorted class-folder names (of root/train when the split folders exist)."""
    root = _need_dir(root, key)
    base = root / "train" if (root / "train").is_dir() else root
    names = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not names:
        raise AnnotationError(f"{key}={root}: no class folders in {base} (expected {base}/<class name>/*.mp4)")
    return names


def read_video_folder(root: str | Path, split: str, class_names: Sequence[str], val_fraction: float = 0.2,
                      seed: int = 0, key: str = "data.root") -> list[VideoRecord]:
    """Records of one split: from root/<split>/ when root/train exists (test falls back to val), else a
    seeded per-class split of root/<class>/ (val_fraction to val, which is also the test split)."""
    root = _need_dir(root, key)
    if (root / "train").is_dir():
        folder = root / split if (root / split).is_dir() or split != "test" else root / "val"
        _need_dir(folder, f"{key} (split folder)")
        unknown = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name not in class_names)
        if unknown:
            raise AnnotationError(f"{folder}: class folders {unknown} are not in {root / 'train'}")
        return [VideoRecord(p, i) for i, c in enumerate(class_names) if (folder / c).is_dir()
                for p in _class_videos(folder / c)]
    if not 0.0 < val_fraction < 1.0:
        raise AnnotationError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    records = []
    for i, c in enumerate(class_names):
        videos = _class_videos(root / c)
        order = np.random.default_rng([seed, i]).permutation(len(videos))
        n_val = min(max(1, round(val_fraction * len(videos))), len(videos) - 1) if len(videos) > 1 else 0
        chosen = order[:n_val] if split != "train" else order[n_val:]
        records += [VideoRecord(videos[j], i) for j in sorted(chosen)]
    return records
