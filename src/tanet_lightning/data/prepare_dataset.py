"""A prepared copy of a whole dataset: every video re-encoded (prepare.py), the annotation files rewritten,
one index sidecar (index.py). The library of ``python -m tanet_lightning.prepare``.

Layout: a video keeps its path relative to the dataset root (``<out>/<same relative path>``), so the
annotation files keep theirs; they are rewritten into ``<out>/annotations/`` without the videos that could
not be read (those are listed in ``<out>/prepare_failed.tsv``). Synthetic data keeps its own layout
(``<out>/<variant>/``); class folders get ``train``/``val`` split folders, so a split that was drawn by
seed stays the same split. Frame folders (Something-Something V1, rawframe lists) stay frames: linked.

Resuming: an output whose sidecar entry still describes it (size, mtime) and whose source is unchanged
is kept; anything else is redone. Outputs appear under their final names only once verified (a
temporary name, then a rename), and the sidecar is rewritten every minute or so and when the run ends or
is stopped, so a killed run loses at most that minute.

Nothing but prepare's own earlier output is ever replaced. Before any work, an ``out`` that is, contains or
lies inside an input (the dataset root, any video, an annotation or class file; compared as real paths, so
a symlinked alias is the same folder) is refused, and so is a file at a path prepare would write that it
did not write itself: ``<out>/.prepare_manifest.json`` records the paths it writes (before writing them)
and the content of the annotation and class files it wrote (a list edited since is the user's).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from ..base.errors import DataError
from .files import read_text
from .formats import SPLITS, Reader, Source, VideoRecord, text_lines
from .index import INDEX_NAME, IndexEntry, VideoIndex, write_index
from .prepare import CRF, GOP, SHORT_SIDE, prepare_video

log = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------------------------------
# what may be written: never an input, never a file prepare did not write


@dataclass
class Manifest:
    """``<out>/.prepare_manifest.json``: what prepare wrote into ``out`` (paths relative to it).

    ``claimed``: the paths prepare writes whatever they hold (videos, frame links, the sidecar, its own
    lists), recorded before any is written, so that a killed run's files stay its own; ``files``: the
    annotation and class files with the sha256 of what prepare wrote there (one edited since is the
    user's); ``retried``: the videos kept at a higher quality or as the source (rel -> [kept, why])."""

    out: Path
    claimed: set[str] = field(default_factory=set)
    files: dict[str, list[str]] = field(default_factory=dict)
    retried: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path) -> Manifest:
        path = out / MANIFEST
        if not os.path.lexists(path):
            return cls(out)
        try:
            d = json.loads(read_text(path))
            return cls(out, set(d["claimed"]), dict(d["files"]), dict(d["retried"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); it records which files of out={out} "
                            f"prepare wrote, so nothing there can be replaced without it. Give out= a new folder"
                            ) from None

    def rel(self, path: Path) -> str:
        """``path``'s key: its path relative to ``out`` (a string prefix for paths under it: 250k videos)."""
        path, base = os.fspath(path), os.fspath(self.out) + os.sep
        return path[len(base):] if path.startswith(base) else Path(os.path.relpath(path, self.out)).as_posix()

    def owns(self, path: Path) -> bool:
        rel = self.rel(path)
        if rel in self.claimed:
            return True
        return rel in self.files and path.is_file() and not path.is_symlink() and \
            _sha256(path.read_bytes()) in self.files[rel]

    def save(self) -> None:
        data = {"claimed": sorted(self.claimed), "files": self.files, "retried": self.retried}
        _replace(self.out / MANIFEST, (json.dumps(data, sort_keys=True) + "\n").encode())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary name beside it, then a rename; a symlink at ``path``
    is replaced, never followed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _targets(p: Plan, out: Path) -> tuple[list[Path], list[Path]]:
    """Every path prepare writes into ``out``: (claimed, annotation and class files)."""
    root = Path(p.prepared.root)
    claimed = [root / j.rel for j in p.jobs] + [root / INDEX_NAME, out / FAILED, out / RETRIED, out / TMP]
    if p.source.format == "synthetic":
        claimed += [root / "classes.txt", root / "manifest.json"]
    lists = [Path(f) for f in {*p.prepared.ann.values(), p.prepared.classes} if f]
    return claimed, sorted(lists)


def check_output(p: Plan, out: str | os.PathLike) -> Manifest:
    """Refuse ``out`` before anything is written when it overlaps an input, or when it holds, at a path
    prepare would write, a file prepare did not write. Returns ``out``'s manifest."""
    out = Path(os.path.abspath(out))
    _check_overlap(p, out)
    manifest = Manifest.load(out)
    if not out.exists():
        return manifest
    claimed, lists = _targets(p, out)
    root = Path(p.prepared.root)
    index = VideoIndex.load(root)  # the sidecar of a prepare from before manifests: its videos are its own
    links = {root / j.rel: os.path.abspath(j.src) for j in p.jobs if j.frames}
    foreign = [path for path in [*claimed, *lists] if os.path.lexists(path) and not (
        manifest.owns(path) or (index is not None and (path == root / INDEX_NAME or index.lookup(path)))
        or (path in links and path.is_symlink() and os.readlink(path) == links[path]))]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise DataError(f"{foreign[0]}{more} would be replaced, but prepare did not write it (or it changed since "
                        f"it did): prepare replaces only its own earlier output in out={out}, recorded in "
                        f"{out / MANIFEST}. Move it away, or give out= a new folder")
    return manifest


def _check_overlap(p: Plan, out: Path) -> None:
    """An ``out`` that is, contains or lies inside an input would write over the dataset it reads."""
    real_out = os.path.realpath(out)
    s = p.source
    inputs = [("data.root", str(s.root)), *((s.ann_keys.get(k, "the annotation file"), f) for k, f in s.ann.items()
                                            if f), *([("data.classes", s.classes)] if s.classes else [])]
    for what, path in inputs:
        _refuse_overlap(out, real_out, what, path, os.path.realpath(path))
    dirs: dict[str, str] = {}  # a video's folder -> its real path (250k videos share a few thousand)
    for job in p.jobs:
        head, name = os.path.split(os.path.abspath(job.src))
        if head not in dirs:
            dirs[head] = os.path.realpath(head)
        real = os.path.join(dirs[head], name)
        _refuse_overlap(out, real_out, "the video", job.src, os.path.realpath(real) if os.path.islink(real) else real)


def _refuse_overlap(out: Path, real_out: str, what: str, path: str, real: str) -> None:
    inside = lambda a, b: a.startswith(b.rstrip(os.sep) + os.sep)  # noqa: E731 -- a below folder b
    if real == real_out:
        how = f"out={out} is {what}={path}"
    elif inside(real, real_out):
        how = f"{what}={path} is inside out={out}"
    elif inside(real_out, real):
        how = f"out={out} is inside {what}={path}"
    else:
        return
    aliased = (real, real_out) != (os.path.abspath(path), str(out))  # a symlink on the way
    resolved = f" (as real paths: {real} and {real_out})" if aliased else ""
    raise DataError(f"out={out} and the dataset it prepares overlap: {how}{resolved}. prepare would write over "
                    f"its own input; give out= a folder that neither holds nor lies inside the dataset's files")


# ----------------------------------------------------------------------------------------------------
# running the jobs


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """One prepare at a time per output folder (a second would rename over the first's files)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"another prepare is writing {out}: wait for it, or give out=DIR elsewhere") from None
        yield


def run(p: Plan, out: str | os.PathLike, gop: int = GOP, short_side: int | None = SHORT_SIDE, crf: int = CRF,
        workers: int = 1, progress: bool = True, manifest: Manifest | None = None) -> Result:
    """Prepare every video of the plan (resuming an earlier run), write the sidecar, the annotation files and
    ``prepare_failed.tsv``. Stopping (an exception, a signal turned into one) keeps what is finished."""
    out, root = Path(os.path.abspath(out)), Path(p.prepared.root)
    manifest = manifest or check_output(p, out)  # given: the caller has checked out already
    with locked(out):
        manifest.claimed |= {manifest.rel(path) for path in _targets(p, out)[0]}
        manifest.save()  # before any of those paths is written: whatever a killed run leaves there is its own
        shutil.rmtree(out / TMP, ignore_errors=True)  # a killed run's temporary files
        (out / TMP).mkdir()
        root.mkdir(parents=True, exist_ok=True)
        result = Result(entries=_reusable(p.jobs, root))
        result.done_before = len(result.entries)
        result.retried = {rel: tuple(manifest.retried[key]) for rel in result.entries
                          if (key := manifest.rel(root / rel)) in manifest.retried}
        todo = [j for j in p.jobs if not j.frames and j.rel not in result.entries]
        for job in p.jobs:
            if job.frames:
                _link(job.src, root / job.rel)
        check_space(todo, out)
        start, saved = time.perf_counter(), [time.perf_counter(), 0.0]
        bar = tqdm(total=sum(not j.frames for j in p.jobs), initial=result.done_before, unit="video",
                   desc="prepare", disable=not progress, mininterval=1 if sys.stderr.isatty() else 30)
        try:
            args = [(j.src, str(root / j.rel), str(out / TMP / f"{i}{Path(j.rel).suffix}"), gop, short_side, crf)
                    for i, j in enumerate(todo)]
            for i, (ok, value) in _results(args, workers):
                job = todo[i]
                if ok:
                    result.entries[job.rel] = value.entry
                    if value.kept:
                        result.retried[job.rel] = (value.kept, value.why)
                else:
                    result.failed[job.rel] = value
                    bar.set_postfix(failed=len(result.failed), refresh=False)
                bar.update()
                now = time.perf_counter()
                if now - saved[0] > max(SAVE_EVERY_S, 20 * saved[1]):  # the sidecar is the resume point
                    _save(manifest, root, result)
                    saved[:] = [time.perf_counter(), time.perf_counter() - now]
        finally:
            bar.close()
            result.seconds = time.perf_counter() - start
            _save(manifest, root, result)
            write_failed(out, p, result.failed)
            write_retried(out, p, result.retried)
            shutil.rmtree(out / TMP, ignore_errors=True)
        write_annotations(p, result.failed, manifest)
        return result


def _save(manifest: Manifest, root: Path, result: Result) -> None:
    """The resume point: the retries of the prepared videos, then the sidecar (a video in the sidecar has
    its retry recorded)."""
    for rel in result.entries:
        if rel in result.retried:
            manifest.retried[manifest.rel(root / rel)] = list(result.retried[rel])
        else:
            manifest.retried.pop(manifest.rel(root / rel), None)
    manifest.save()
    write_index(root, result.entries)


def _reusable(jobs: list[Job], root: Path) -> dict[str, IndexEntry]:
    """Entries of an earlier run whose output still is what it wrote and whose source has not changed."""
    index = VideoIndex.load(root)
    if index is None:
        return {}
    kept = {}
    for job in jobs:
        entry = index.entry(job.rel)
        if entry is None or job.frames:
            continue
        try:
            src = os.stat(job.src)
            ok = entry.describes(os.stat(root / job.rel)) and (src.st_size, src.st_mtime_ns) == (
                entry.source_size, entry.source_mtime_ns)
        except OSError:
            ok = False
        if ok:
            kept[job.rel] = entry
    return kept


def _link(src: str, dst: Path) -> None:
    if dst.is_symlink() and os.readlink(dst) == os.path.abspath(src):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(os.path.abspath(src), target_is_directory=True)


def check_space(todo: list[Job], out: Path) -> None:
    """Refuse to start when the disk cannot hold the outputs: a re-encoded video takes about as many bytes
    as its source (a smaller picture, but 8x the keyframes of a GOP-250 file)."""
    need = sum(os.path.getsize(j.src) for j in todo if os.path.isfile(j.src))
    free = shutil.disk_usage(out).free
    if need > free:
        raise DataError(f"out={out}: about {need / 1e9:.1f} GB are needed for {len(todo)} videos (as much as "
                        f"their sources), {free / 1e9:.1f} GB are free. Free some space, or give out=DIR on a "
                        f"larger disk")


def _results(args: list[tuple], workers: int) -> Iterator[tuple[int, tuple[bool, object]]]:
    """(job number, (ok, entry or reason)) as the jobs finish; in this process, or one process per worker."""
    if workers <= 1 or len(args) <= 1:
        for i, a in enumerate(args):
            yield i, _checked(_work(i, *a))
        return
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    # `with` terminates the workers (SIGTERM: each deletes its temporary file) when the loop is left early
    with ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        for i, result in pool.imap_unordered(_work_star, list(enumerate(args))):
            yield i, _checked(result)


def _checked(result: tuple[bool, object]) -> tuple[bool, object]:
    ok, value = result
    if not ok and isinstance(value, tuple):  # a full disk: every later video would fail the same way
        raise DataError(f"the disk of the output is full ({value[1]}): free some space and run the same command "
                        f"again (it resumes)")
    return ok, value


def _work_star(item):
    i, a = item
    return i, _work(i, *a)


def _work(i: int, src: str, dst: str, tmp: str, gop: int, short_side: int | None, crf: int):
    """(True, entry) or (False, reason): a video that cannot be prepared is reported, never fatal."""
    try:
        return True, prepare_video(src, dst, gop, short_side, crf, tmp=tmp)
    except Exception as e:  # noqa: BLE001 -- whatever the file does to the decoder, the run goes on
        cause = e
        while cause is not None:
            if getattr(cause, "errno", None) == errno.ENOSPC:
                return False, ("disk full", str(e))
            cause = cause.__cause__
        return False, f"{type(e).__name__}: {e}".replace("\n", " ")[:500]


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwinds: temp files go
    if sys.platform.startswith("linux"):  # a worker ends with its parent, even a killed one
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(1)


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
            _replace(Path(p.prepared.root) / name, (Path(p.source.root) / name).read_bytes())


def _write_lists(lists: dict[Path, bytes], manifest: Manifest) -> None:
    """Write the annotation and class files with their content recorded in the manifest: each one's new
    hash is recorded (beside the one it replaces) before the file gets its name, so that a run killed
    between the two leaves a file of its own either way."""
    for path, data in lists.items():
        key = manifest.rel(path)
        manifest.files[key] = list(dict.fromkeys([_sha256(data), *manifest.files.get(key, [])]))
    manifest.save()
    for path, data in lists.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace(path, data)
        manifest.files[manifest.rel(path)] = [_sha256(data)]
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


__all__ = ["INDEX_NAME", "Job", "Manifest", "Plan", "Result", "check_output", "check_prepared", "plan", "run",
           "split_sizes", "training_overrides"]
