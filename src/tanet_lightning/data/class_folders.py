"""Class folders: ``<root>/<class name>/**/*.mp4``, optionally inside ``<root>/{train,val,test}/`` (a
user's own videos, format ``video_folder``). Nested folders inside a class folder are read: people sort
a class's videos by date, camera or source, and the class is still the top-level folder."""


import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .annotations import AnnotationError, DatasetNotFoundError, VideoRecord
from .files import VIDEO_EXTENSIONS, describe_ignored, find_videos, is_hidden

log = logging.getLogger(__name__)


_FOLDER_LAYOUT = "<root>/<class name>/*.mp4 (or <root>/train|val|test/<class name>/*.mp4)"


def _need_dir(path: str | Path, key: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DatasetNotFoundError(f"{key}={path}: no such folder; format video_folder reads {_FOLDER_LAYOUT}")
    return p


def _class_dirs(base: Path) -> list[str]:
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not is_hidden(d.name))


def scan_class_folders(base: Path, key: str = "data.root", report: bool = True) -> dict[str, list[str]]:
    """{class name: its videos} of the class folders in ``base``; an empty class folder is refused and
    files that are not videos are counted in the log (``report``)."""
    videos, ignored = {}, []
    for name in _class_dirs(base):
        found = find_videos(base / name)
        if not found.videos:
            holds = describe_ignored(found.ignored) if found.ignored else "nothing"
            raise AnnotationError(f"{key}: class folder {base / name} holds no videos (it holds {holds}); "
                                  f"add videos ({' '.join(VIDEO_EXTENSIONS)}) or remove the folder")
        videos[name] = found.videos
        ignored += found.ignored
    loose = [str(f) for f in base.iterdir() if f.is_file() and not is_hidden(f.name)]
    if ignored and report:
        log.warning("%s: ignored %s that are not videos", base, describe_ignored(ignored))
    if loose and report:
        log.warning("%s: ignored %s outside any class folder", base, describe_ignored(loose))
    return videos


def _split_base(root: Path) -> Path | None:
    """root/train when the split folders exist (then train/ gives the class names)."""
    return root / "train" if (root / "train").is_dir() else None


def video_folder_classes(root: str | Path, key: str = "data.root") -> list[str]:
    """Sorted class-folder names (of root/train when the split folders exist)."""
    root = _need_dir(root, key)
    base = _split_base(root) or root
    names = list(scan_class_folders(base, key))
    if not names:
        raise AnnotationError(f"{key}={root}: no class folders in {base} (expected {_FOLDER_LAYOUT})")
    return names


def read_video_folder(root: str | Path, split: str, class_names: Sequence[str], val_fraction: float = 0.2,
                      seed: int = 0, key: str = "data.root") -> list[VideoRecord]:
    """Records of one split: from root/<split>/ when root/train exists (test falls back to val), else a
    seeded per-class split of root/<class>/ (val_fraction to val, which is also the test split)."""
    root = _need_dir(root, key)
    if _split_base(root) is not None:
        folder = root / split if (root / split).is_dir() or split != "test" else root / "val"
        _need_dir(folder, f"{key} (split folder)")
        unknown = sorted(set(_class_dirs(folder)) - set(class_names))
        if unknown:
            raise AnnotationError(f"{folder}: class folders {unknown} are not in {root / 'train'}; "
                                  f"every class needs training videos")
        found = scan_class_folders(folder, key, report=split != "train")  # train/ was read for the names
        return [VideoRecord(p, i) for i, c in enumerate(class_names) for p in found.get(c, [])]
    if not 0.0 < val_fraction < 1.0:
        raise AnnotationError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    found = scan_class_folders(root, key, report=False)  # reported when the class names were read
    records = []
    for i, c in enumerate(class_names):
        videos = found.get(c, [])
        order = np.random.default_rng([seed, i]).permutation(len(videos))
        n_val = min(max(1, round(val_fraction * len(videos))), len(videos) - 1) if len(videos) > 1 else 0
        chosen = order[:n_val] if split != "train" else order[n_val:]
        records += [VideoRecord(videos[j], i) for j in sorted(chosen)]
    return records
