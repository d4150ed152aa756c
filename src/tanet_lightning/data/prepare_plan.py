"""What ``prepare`` writes where: the jobs (one per video or frame folder), the prepared copy's ``Source``
and the names of the files beside the videos."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .formats import SPLITS, Reader, Source, VideoRecord
from .index import IndexEntry

ANNOTATIONS = "annotations"
FAILED = "prepare_failed.tsv"
RETRIED = "prepare_retried.tsv"  # videos kept at a higher quality than the asked crf, or as the source
MANIFEST = ".prepare_manifest.json"
TMP = ".prepare_tmp"  # temporary outputs, renamed into place once verified (same file system as <out>)
LOCK = ".prepare.lock"
SAVE_EVERY_S = 60.0
LIST_FIELDS = {"video_list": 1, "synthetic": 1, "rawframes": 2}  # lists whose lines start with the path


@dataclass(frozen=True)
class Job:
    rel: str  # path under the prepared root
    src: str
    splits: tuple[str, ...]
    frames: bool = False  # a frame folder: linked, not re-encoded


@dataclass
class Plan:
    source: Source  # the dataset as the DataModule reads it
    prepared: Source  # the same format, reading the prepared copy
    class_names: list[str]
    records: dict[str, list[tuple[VideoRecord, str]]]  # split -> (record, its path under the prepared root)
    jobs: list[Job]


@dataclass
class Result:
    entries: dict[str, IndexEntry] = field(default_factory=dict)  # rel -> entry of every prepared video
    failed: dict[str, str] = field(default_factory=dict)  # rel -> why
    retried: dict[str, tuple[str, str]] = field(default_factory=dict)  # rel -> (what was kept, why)
    done_before: int = 0  # kept from an earlier run
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------------
# what to write where


def plan(reader: Reader, source: Source, class_names: list[str], out: str | os.PathLike) -> Plan:
    """The jobs and the prepared dataset's ``Source`` for ``source`` (as located by its reader) copied to ``out``."""
    out, root = Path(os.path.abspath(out)), Path(os.path.abspath(source.root))
    prepared = reader.locate(replace(source, root=out))
    folders_by_seed = source.format == "video_folder" and not (root / "train").is_dir()
    records, jobs, seen = {}, {}, {}
    for split in SPLITS:
        rows = reader.records(source, split, class_names)
        if split == "test" and [r.path for r in rows] == [r.path for r, _ in records.get("val", [])]:
            records[split] = records["val"]  # the test split is the val split (no test annotations)
            continue
        records[split] = []
        for rec in rows:
            rel = _relative(rec.path, root, split if folders_by_seed else None)
            records[split].append((rec, rel))
            if rel in seen:
                jobs[rel] = replace(jobs[rel], splits=(*jobs[rel].splits, split))
                continue
            seen[rel] = rec.path
            jobs[rel] = Job(rel, rec.path, (split,), frames=os.path.isdir(rec.path))
    if reader.annotated:
        used = {}
        ann = {}
        for split in SPLITS:
            src = source.ann.get(split)
            name = Path(src).name
            if used.get(name, src) != src:
                name = f"{split}_{name}"
            used[name] = src
            ann[split] = str(out / ANNOTATIONS / name)
        classes = str(out / ANNOTATIONS / Path(source.classes).name) if source.classes else None
        prepared = replace(prepared, ann=ann, classes=classes)
    return Plan(source, prepared, list(class_names), records, list(jobs.values()))


def _relative(path: str, root: Path, split: str | None) -> str:
    """A video's path under the prepared root: its path under the dataset root (under ``split``/ when the
    split was drawn by seed); a video outside the root gets a folder of its own."""
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel.startswith(".."):
        parent = os.path.dirname(os.path.abspath(path))
        digest = hashlib.sha1(parent.encode()).hexdigest()[:10]  # the same folder on every run
        rel = os.path.join("_outside", digest, os.path.basename(path))
    return os.path.join(split, rel) if split else rel
