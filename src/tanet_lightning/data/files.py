"""Files as users have them: which files are videos, which entries to skip, and text in any common encoding.

Folders copied from a Mac, a notebook server or a Windows share carry entries nobody meant as data
(``__MACOSX``, ``.ipynb_checkpoints``, AppleDouble ``._clip.mp4``, ``Thumbs.db``); they are skipped
everywhere a folder is walked. Annotation files come from many editors: UTF-8 with or without a BOM,
UTF-16 with a BOM (Windows "Unicode"), Latin-1; CRLF, CR or LF line ends.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

# what PyAV/FFmpeg reads and people keep videos in; matched case-insensitively
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv")
# entries that operating systems, archivers and tools leave behind (names starting with "." are skipped too)
SYSTEM_NAMES = frozenset({"__MACOSX", "__pycache__", "Thumbs.db", "desktop.ini", "$RECYCLE.BIN",
                          "System Volume Information", "@eaDir", "lost+found"})


def is_hidden(name: str) -> bool:
    """A hidden or system entry: never a class, never a video (``.ipynb_checkpoints``, ``._x.mp4``...)."""
    return name.startswith(".") or name in SYSTEM_NAMES


def is_video(name: str) -> bool:
    return not is_hidden(name) and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


class Found(NamedTuple):
    videos: list[str]  # sorted paths
    ignored: list[str]  # visible files that are not videos (hidden and system entries are not counted)


def find_videos(folder: str | os.PathLike, recursive: bool = True) -> Found:
    """Every video file under ``folder`` (nested folders included unless ``recursive=False``), sorted;
    hidden and system entries are skipped, symlinked files followed, symlinked sub-folders not (no cycles)."""
    videos, ignored = [], []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d)) if recursive else []
        for name in files:
            if is_video(name):
                videos.append(os.path.join(top, name))
            elif not is_hidden(name):
                ignored.append(os.path.join(top, name))
    return Found(sorted(videos), sorted(ignored))


def describe_ignored(paths: list[str]) -> str:
    """'3 files (.txt: 2, .jpg: 1)': what a log line says about files that are not videos."""
    kinds = Counter(os.path.splitext(p)[1].lower() or "(no extension)" for p in paths)
    return f"{len(paths)} files ({', '.join(f'{k}: {n}' for k, n in kinds.most_common())})"


def read_text(path: str | Path) -> str:
    """The text of an annotation file: UTF-8 (BOM or not), UTF-16 with a BOM, else Latin-1 with a warning."""
    data = Path(path).read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        log.warning("%s is not UTF-8 (byte %d); read as Latin-1. Save it as UTF-8 if names look wrong",
                    path, e.start)
        return data.decode("latin-1")


def text_lines(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) of every line that is not blank or a ``#`` comment.
    Line ends are LF, CRLF or CR alone (old Mac); nothing else splits a line (str.splitlines would split
    at U+0085, which Latin-1 files use)."""
    lines = re.split(r"\r\n|\r|\n", read_text(path))
    return [(n, s) for n, line in enumerate(lines, 1) if (s := line.strip()) and not s.startswith("#")]
