"""The files ``prepare`` writes beside the videos: the rewritten annotation files (without the videos that
could not be read), ``prepare_failed.tsv``, ``prepare_retried.tsv``, and the overrides that train on the copy."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..base.errors import DataError
from ..base.files import atomic_write_bytes
from .files import read_text
from .formats import SPLITS, Reader, text_lines
from .prepare_output import Manifest, sha256_of
from .prepare_plan import FAILED, LIST_FIELDS, RETRIED, Plan

# ----------------------------------------------------------------------------------------------------
# the files beside the videos


def write_failed(out: Path, p: Plan, failed: dict[str, str]) -> Path | None:
    """``prepare_failed.tsv``: split, source path, reason of every video that could not be prepared (removed
    when there are none)."""
    path = out / FAILED
    if not failed:
        path.unlink(missing_ok=True)
        return None
    jobs = {j.rel: j for j in p.jobs}
    rows = [f"{','.join(jobs[rel].splits)}\t{jobs[rel].src}\t{why}" for rel, why in sorted(failed.items())]
    path.write_text("split\tpath\treason\n" + "\n".join(rows) + "\n")
    return path


def write_retried(out: Path, p: Plan, retried: dict[str, tuple[str, str]]) -> Path | None:
    """``prepare_retried.tsv``: split, source path, what was kept (``crf=N``, ``lossless`` or ``source``) and
    why, for every video whose copy at the asked crf did not check out (removed when there are none)."""
    path = out / RETRIED
    if not retried:
        path.unlink(missing_ok=True)
        return None
    jobs = {j.rel: j for j in p.jobs}
    rows = [f"{','.join(jobs[rel].splits)}\t{jobs[rel].src}\t{kept}\t{why}"
            for rel, (kept, why) in sorted(retried.items())]
    path.write_text("split\tpath\tkept\treason\n" + "\n".join(rows) + "\n")
    return path


def write_annotations(p: Plan, failed: dict[str, str], manifest: Manifest) -> None:
    """The annotation files of the prepared copy: the same format and labels, without the failed videos."""
    lists: dict[Path, bytes] = {}
    for split in SPLITS:
        src, dst = p.source.ann.get(split), p.prepared.ann.get(split)
        if src is None or dst is None or Path(dst) in lists:
            continue
        keep = [rel not in failed for _, rel in p.records[split]]
        rels = [rel for _, rel in p.records[split]]
        lists[Path(dst)] = _filtered(p.source.format, Path(src), keep, rels).encode()
    if p.source.classes and p.prepared.classes:
        lists[Path(p.prepared.classes)] = Path(p.source.classes).read_bytes()
    _write_lists(lists, manifest)
    if p.source.format == "synthetic":  # the manifest last: it marks the folder complete (synthetic.py)
        for name in ("classes.txt", "manifest.json"):
            atomic_write_bytes(Path(p.prepared.root) / name, (Path(p.source.root) / name).read_bytes())


def _write_lists(lists: dict[Path, bytes], manifest: Manifest) -> None:
    """Write the annotation and class files with their content recorded in the manifest: each one's new
    hash is recorded (beside the one it replaces) before the file gets its name, so that a run killed
    between the two leaves a file of its own either way."""
    for path, data in lists.items():
        key = manifest.rel(path)
        manifest.files[key] = list(dict.fromkeys([sha256_of(data), *manifest.files.get(key, [])]))
    manifest.save()
    for path, data in lists.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        manifest.files[manifest.rel(path)] = [sha256_of(data)]
    manifest.save()


def _filtered(fmt: str, ann: Path, keep: list[bool], rels: list[str]) -> str:
    """The annotation file without the entries of failed videos; a list's path is rewritten where the
    video moved (it was outside the dataset root)."""
    if fmt == "sthv2_json":
        items = json.loads(read_text(ann))
        _same_count(ann, len(items), keep)
        return json.dumps([item for item, k in zip(items, keep) if k]) + "\n"
    lines = [line for _, line in text_lines(ann)]
    header = lines[:1] if fmt == "kinetics_csv" else []
    rows = lines[len(header):]
    _same_count(ann, len(rows), keep)
    fields = LIST_FIELDS.get(fmt)  # the columns after the path: the path may contain spaces
    if fields:
        for i, (row, rel) in enumerate(zip(rows, rels)):
            path = row.rsplit(None, fields)[0]
            if os.path.normpath(path) != rel:
                rows[i] = rel + row[len(path):]
    return "\n".join([*header, *(row for row, k in zip(rows, keep) if k)]) + "\n"


def _same_count(ann: Path, n: int, keep: list[bool]) -> None:
    if n != len(keep):
        raise DataError(f"{ann}: {n} entries but {len(keep)} videos were read from it; was it changed meanwhile?")


def check_prepared(reader: Reader, p: Plan, failed: dict[str, str]) -> None:
    """Read the prepared copy back through its format: the same class names, and every prepared video with
    its label (what training on it will see)."""
    names = reader.class_names(p.prepared)
    if names != p.class_names:
        raise DataError(f"the prepared copy's classes differ from the dataset's ({len(names)} vs "
                        f"{len(p.class_names)}): every video of a class failed? See {FAILED}")
    for split in SPLITS:
        got = {os.path.relpath(os.path.abspath(r.path), os.path.abspath(p.prepared.root)): r.label
               for r in reader.records(p.prepared, split, names)}
        want = {rel: r.label for r, rel in p.records[split] if rel not in failed}
        if got != want:
            wrong = sorted(set(got.items()) ^ set(want.items()))[:3]
            raise DataError(f"the prepared {split} split does not read back as written: {wrong}")


def split_sizes(p: Plan, failed: dict[str, str]) -> dict[str, tuple[int, int]]:
    """split -> (videos in the dataset, videos in the copy): only the unreadable ones are left out."""
    return {split: (len(rows), sum(rel not in failed for _, rel in rows)) for split, rows in p.records.items()}


def training_overrides(p: Plan, out: str | os.PathLike) -> list[str]:
    """The ``data.*`` keys that make the same data config read the prepared copy."""
    keys = [f"data.root={out}"]
    if p.source.format != "synthetic":
        keys += [f"{p.source.ann_keys[s]}={p.prepared.ann[s]}" for s in SPLITS
                 if p.prepared.ann.get(s) and p.source.ann_keys.get(s) == f"data.{s}_ann"]
        if p.prepared.classes:
            keys.append(f"data.classes={p.prepared.classes}")
    return keys

