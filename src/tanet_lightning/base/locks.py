"""The one cross-process lock of the project (run directories, sweeps, data generation, prepare): an
exclusive lock on a file, released when the holder exits or dies, never left stale. ``filelock`` does this on
every platform (flock on POSIX, LockFileEx on Windows).

A holder may write who it is into the lock file (``Lock.claim``), so that a process refused by a
non-blocking ``hold`` can name it (``Held.holder``). Only ``claim`` writes there: taking the lock leaves the
file as it was (empty when new), and a refused process leaves it alone."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["Held", "Lock", "exclusive", "hold"]

UNKNOWN = "pid unknown"


class Held(Exception):
    """Another process holds the lock (raised by a non-blocking ``hold`` / ``exclusive``). ``holder``: what
    the holder wrote with ``Lock.claim`` (e.g. ``pid 123 on node7``), or ``pid unknown``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.holder = _holder(self.path)
        super().__init__(f"{self.path} is held by another process ({self.holder})")


class Lock:
    """A lock this process holds, until ``release()`` (or the end of the process)."""

    def __init__(self, path: Path, lock: FileLock):
        self.path, self._lock = path, lock

    def claim(self, who: str | None = None) -> None:
        """Write who holds the lock into the lock file (default ``pid <pid> on <host>``), for ``Held.holder``."""
        with open(self.path, "r+") as f:  # the file filelock holds, not a new one (same inode)
            f.truncate()
            f.write(f"{who or f'pid {os.getpid()} on {socket.gethostname()}'}\n")

    def release(self) -> None:
        self._lock.release()


def hold(path: str | os.PathLike, blocking: bool = False) -> Lock:
    """Take the lock on ``path`` (created if missing); non-blocking, ``Held`` when another process (or another
    ``hold`` in this one) has it. Not re-entrant: two holds of one file never share it."""
    path = Path(path)
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=-1 if blocking else 0)
    except Timeout:
        raise Held(path) from None
    return Lock(path, lock)


@contextmanager
def exclusive(path: str | os.PathLike, blocking: bool = True) -> Iterator[Lock]:
    """``with exclusive(lock_file):`` the block runs while no other process holds ``lock_file``."""
    lock = hold(path, blocking)
    try:
        yield lock
    finally:
        lock.release()


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or UNKNOWN
    except (OSError, UnicodeDecodeError):  # gone, or unreadable while locked (Windows locks the bytes)
        return UNKNOWN
