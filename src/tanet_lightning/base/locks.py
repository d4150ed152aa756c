"""The one cross-process lock of the project (run directories, sweeps, data generation, prepare): an
exclusive lock on a file, released when the holder exits or dies, never left stale. ``filelock`` does this on
every platform (flock on POSIX, LockFileEx on Windows)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["Held", "exclusive", "hold"]


class Held(Exception):
    """Another process holds the lock (raised by a non-blocking ``exclusive`` / ``hold``)."""


def hold(path: str | os.PathLike, blocking: bool = False) -> FileLock:
    """Take the lock on ``path`` for as long as the returned object lives (``.release()`` to let go); not
    re-entrant across processes, re-entrant within one thread (filelock counts)."""
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=-1 if blocking else 0)
    except Timeout:
        raise Held(str(path)) from None
    return lock


@contextmanager
def exclusive(path: str | os.PathLike, blocking: bool = True) -> Iterator[Path]:
    """``with exclusive(lock_file):`` the block runs while no other process holds ``lock_file``."""
    lock = hold(path, blocking)
    try:
        yield Path(path)
    finally:
        lock.release()
