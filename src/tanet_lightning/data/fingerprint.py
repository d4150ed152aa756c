"""Split fingerprints: which videos a number was computed on, in a few counts and hashes.

Per split: videos annotated, found on disk, unreadable (met while reading; None before the split was
read), a sha256 of the sorted (video id, label) pairs of the videos found, and of the class list and the
flip map. A video's id is its path relative to ``data.root``: moving the dataset changes nothing. Cheap:
one directory listing per folder of videos, no decoding. The (id, label) pairs travel packed beside the
fingerprint (checkpoints keep them), so that a later comparison names the videos that are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .formats import VideoRecord

SHORT = 8  # hex digits shown in messages and reports


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def video_ids(paths: Iterable[str], root: str) -> list[str]:
    """Each path relative to ``root`` ('/' separated); a path outside it stays as it is."""
    prefix = root.rstrip(os.sep) + os.sep
    return [(p[len(prefix):] if p.startswith(prefix) else p).replace(os.sep, "/") for p in paths]


def existing(paths: Iterable[str]) -> list[bool]:
    """Whether each path exists, from one listing per parent folder (a stat per video is slow on network
    file systems with hundreds of thousands of videos)."""
    listed: dict[str, set[str]] = {}
    out = []
    for p in paths:
        q = os.path.normpath(p)  # a frame folder may end with '/'
        parent, _, name = q.rpartition(os.sep)
        parent = parent or (os.sep if q.startswith(os.sep) else ".")
        if parent not in listed:
            try:
                listed[parent] = set(os.listdir(parent))
            except OSError:
                listed[parent] = set()
        out.append(name in listed[parent])
    return out


def pack(pairs: Sequence[tuple[str, int]]) -> bytes:
    """Sorted (id, label) pairs as zlib-compressed 'id<TAB>label' lines (checkpoint-safe bytes)."""
    return zlib.compress("\n".join(f"{i}\t{label}" for i, label in pairs).encode(), 6)


def unpack(data: bytes) -> list[tuple[str, int]]:
    text = zlib.decompress(data).decode()
    return [(i, int(label)) for i, _, label in (ln.rpartition("\t") for ln in text.split("\n"))] if text else []


@dataclass(frozen=True)
class SplitFingerprint:
    annotated: int
    found: int
    unreadable: int | None  # unreadable videos met so far; None: the split was not read
    videos_sha256: str  # sorted (id, label) of the videos found
    classes_sha256: str
    flip_map_sha256: str
    num_classes: int
    packed: bytes = field(default=b"", repr=False, compare=False)  # pack() of those pairs

    @property
    def short(self) -> str:
        return self.videos_sha256[:SHORT]

    def to_dict(self) -> dict:
        """The JSON record (run directories, metrics.json, checkpoints' ``data_fingerprint``): no ids."""
        return {k: v for k, v in asdict(self).items() if k != "packed"}

    @classmethod
    def from_dict(cls, d: Mapping, packed: bytes = b"") -> SplitFingerprint:
        return cls(**{f.name: d.get(f.name) for f in fields(cls) if f.name != "packed"}, packed=packed)

    def pairs(self) -> list[tuple[str, int]] | None:
        return unpack(self.packed) if self.packed else None


def fingerprint_split(records: Sequence[VideoRecord], root: str | os.PathLike, class_names: Sequence[str],
                      flip_label_map: Mapping[int, int], present: Sequence[bool] | None = None) -> SplitFingerprint:
    """``present``: which records exist, when the caller knows (a shard location holds every video it lists);
    else one directory listing per folder."""
    root = os.fspath(root)
    present = existing(r.path for r in records) if present is None else present
    found = [r for r, ok in zip(records, present) if ok]
    pairs = sorted(zip(video_ids((r.path for r in found), root), (r.label for r in found)))
    flips = sorted((int(a), int(b)) for a, b in flip_label_map.items())
    return SplitFingerprint(
        annotated=len(records), found=len(found), unreadable=None,
        videos_sha256=_sha256("\n".join(f"{i}\t{label}" for i, label in pairs)),
        classes_sha256=_sha256(json.dumps(list(class_names))), flip_map_sha256=_sha256(json.dumps(flips)),
        num_classes=len(class_names), packed=pack(pairs))


# ----------------------------------------------------------------------------------------------------
# comparison with a saved fingerprint (eval, predict): warnings, never errors


@dataclass
class Differences:
    messages: list[str]  # one line each, ready for a warning
    missing: list[str] = field(default_factory=list)  # ids the saved split had and this one lacks
    extra: list[str] = field(default_factory=list)  # ids this split has and the saved one did not


def compare(split: str, saved: Mapping, current: SplitFingerprint, saved_packed: bytes | None = None,
            missing_file: str | Path | None = None, when: str = "when this checkpoint was made") -> Differences:
    """What differs between a saved fingerprint (``to_dict()``; ``saved_packed``: its ids when kept) and the
    current one. ``missing_file`` is named in the message (the caller writes the list there)."""
    diff = Differences([])
    s = SplitFingerprint.from_dict(saved, saved_packed or b"")
    if s.videos_sha256 != current.videos_sha256:
        old, new = s.pairs(), current.pairs()
        detail = ""
        if old is not None and new is not None:
            old_ids, new_ids = dict(old), dict(new)
            diff.missing = sorted(set(old_ids) - set(new_ids))
            diff.extra = sorted(set(new_ids) - set(old_ids))
            relabelled = sum(1 for i in set(old_ids) & set(new_ids) if old_ids[i] != new_ids[i])
            parts = [f"{len(diff.missing):,} missing" + (f", list in {missing_file}" if diff.missing
                                                         and missing_file else ""),
                     *([f"{len(diff.extra):,} it did not have"] if diff.extra else []),
                     *([f"{relabelled:,} with another label"] if relabelled else [])]
            detail = "; " + "; ".join(parts)
        annotated = f"{current.annotated:,} annotated vs {s.annotated:,}; " if s.annotated != current.annotated \
            else ""
        diff.messages.append(f"{split}: {current.found:,} videos found vs {s.found:,} {when} ({annotated}videos "
                             f"hash {current.short} vs {s.short}){detail}")
    if s.classes_sha256 != current.classes_sha256:
        diff.messages.append(f"{split}: another class list ({current.num_classes} classes, hash "
                             f"{current.classes_sha256[:SHORT]}) than {when} ({s.num_classes}, "
                             f"{s.classes_sha256[:SHORT]})")
    if s.flip_map_sha256 != current.flip_map_sha256:
        diff.messages.append(f"{split}: another flip label map (hash {current.flip_map_sha256[:SHORT]}) than "
                             f"{when} ({s.flip_map_sha256[:SHORT]})")
    if None not in (s.unreadable, current.unreadable) and s.unreadable != current.unreadable:
        diff.messages.append(f"{split}: {current.unreadable:,} unreadable videos vs {s.unreadable:,} {when}")
    return diff
