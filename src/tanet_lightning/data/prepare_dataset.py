"""A prepared copy of a whole dataset: every video re-encoded (transcode.py), the annotation files rewritten,
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
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ..base import locks
from ..base.errors import DataError
from .index import INDEX_NAME, IndexEntry, VideoIndex, write_index
from .prepare_lists import (
    check_prepared,
    split_sizes,
    training_overrides,
    write_annotations,
    write_failed,
    write_retried,
)
from .prepare_output import Manifest, check_output, targets
from .prepare_plan import FAILED, LOCK, MANIFEST, RETRIED, SAVE_EVERY_S, TMP, Job, Plan, Result, plan
from .transcode import CRF, GOP, SHORT_SIDE, prepare_video

# one name for the prepare application (plan, check_output, run, then the lists); the pieces: prepare_plan.py
# (what goes where), prepare_output.py (what may be written), prepare_lists.py (the files beside the videos)
__all__ = ["FAILED", "INDEX_NAME", "MANIFEST", "RETRIED", "TMP", "Job", "Manifest", "Plan", "Result", "check_output",
           "check_prepared", "plan", "run", "split_sizes", "training_overrides"]

# ----------------------------------------------------------------------------------------------------
# running the jobs


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """One prepare at a time per output folder (a second would rename over the first's files)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = locks.hold(out / LOCK)
    except locks.Held:
        raise DataError(f"another prepare is writing {out}: wait for it, or give out=DIR elsewhere") from None
    try:
        yield
    finally:
        lock.release()


def run(p: Plan, out: str | os.PathLike, gop: int = GOP, short_side: int | None = SHORT_SIDE, crf: int = CRF,
        workers: int = 1, progress: bool = True, manifest: Manifest | None = None) -> Result:
    """Prepare every video of the plan (resuming an earlier run), write the sidecar, the annotation files and
    ``prepare_failed.tsv``. Stopping (an exception, a signal turned into one) keeps what is finished."""
    out, root = Path(os.path.abspath(out)), Path(p.prepared.root)
    manifest = manifest or check_output(p, out)  # given: the caller has checked out already
    with locked(out):
        manifest.claimed |= {manifest.rel(path) for path in targets(p, out)[0]}
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
