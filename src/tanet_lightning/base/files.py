"""Files and folders written whole or not at all: a process killed while writing leaves the previous version
(or none), never a half file under the final name. The one temp-then-replace of the project, and its one
temporary name (``temp_name``)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_name(path: str | os.PathLike) -> Path:
    """A hidden name beside ``path`` (same file system, so the rename is atomic) that no other process or
    thread picks: ``.<name>.<host>-<pid>-<random>.tmp``. Readers and `find_videos` skip dot-files; a leftover
    one is recognisably ours, and names the host that made it (``this_hosts_temps``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def this_hosts_temps(path: str | os.PathLike) -> list[Path]:
    """The temporary names of ``path`` made on this host, live or left by a killed writer (a caller holding
    ``path``'s lock knows they are leftovers); another host's are not listed (its writer may be alive)."""
    path = Path(path)
    prefix = f".{path.name}.{socket.gethostname()}-"
    return sorted(p for p in path.parent.glob(f"{glob.escape(prefix)}*.tmp")  # not host `<host>-gpu`'s:
                  if re.fullmatch(r"\d+-[0-9a-f]{8}\.tmp", p.name[len(prefix):]))


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True,
                tmp: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` in one
    rename (fsynced first, so a crash after the rename cannot leave an empty file), on an exception it is
    removed and ``path`` keeps its previous content. A symlink at ``path`` is replaced, never followed.

    ``tmp``: the temporary path (default ``temp_name(path)``), for a caller that keeps its temporary files
    in a folder of its own (on ``path``'s file system: the rename must not become a copy)."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else temp_name(path)
    try:
        yield tmp
        if fsync and tmp.is_file():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a new empty folder (``temp_name(path)``) to fill; on success it is renamed to ``path`` in one
    rename, which fails (an OSError) where ``path`` is a folder with anything in it: a folder is put in place
    whole, never merged into another. ``replace``: an existing ``path`` is moved aside first and removed
    after, so until the new folder is whole the old one stays. On an exception the new folder is removed."""
    path = Path(path)
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        old = temp_name(path) if replace and path.exists() else None
        if old is not None:
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")
