"""What ``prepare`` may write: never an input (the dataset root, any video, an annotation or class file,
compared as real paths), never a file it did not write itself (``<out>/.prepare_manifest.json``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import DataError
from ..base.files import atomic_write_bytes
from .files import read_text
from .index import INDEX_NAME, VideoIndex
from .prepare_plan import FAILED, MANIFEST, RETRIED, TMP, Plan

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
            sha256_of(path.read_bytes()) in self.files[rel]

    def save(self) -> None:
        data = {"claimed": sorted(self.claimed), "files": self.files, "retried": self.retried}
        atomic_write_bytes(self.out / MANIFEST, (json.dumps(data, sort_keys=True) + "\n").encode())


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def targets(p: Plan, out: Path) -> tuple[list[Path], list[Path]]:
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
    claimed, lists = targets(p, out)
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
