"""Ensemble per-video scores (the application: ``python -m tanet_lightning.ensemble a.npz b.npz [--mode prob]``).

Each file is an ``eval`` output (``scores.npz``). Videos are matched by name (by ``video_idx`` in files
without names); files that cover different videos are refused, and labels must agree; scores are
averaged as softmax probabilities (default) or raw logits,
which is how TANet-En combines an 8-frame and a 16-frame model (paper Tables 6 and 7). A file is read
only if its archive's headers say it holds what eval writes (``ARRAYS``, at most ``MAX_BYTES``, no Python
objects): anything else is refused, naming the file and the array, before it is decompressed.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy

from ..base.errors import ConfigError, DataError
from ..base.metrics import accuracy_metrics

# What eval writes (training.module.save_scores), one row per video: array -> (ndim, dtype kinds)
ARRAYS = {"scores": (2, "f"), "labels": (1, "iu"), "video_idx": (1, "iu"), "num_views": (1, "fiu"),
          "video_names": (1, "US")}
# a score file's arrays, uncompressed: ten times the float32 scores of Kinetics-700's validation set
MAX_BYTES = 1 << 30
BAD_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error)  # damaged zip or npy data


def array_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's (shape, dtype) from the archive's headers (zip members, npy headers), nothing but a
    header decompressed: a small file whose arrays would be huge, or need unpickling, is refused here."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a scores file: not a .npz archive (python -m tanet_lightning.eval writes "
                        "scores.npz)")
    headers, total = {}, 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in ARRAYS or name in headers:
                raise DataError(f"{path}: holds {info.filename!r}, which is not an array eval writes (one each of "
                                f"{sorted(ARRAYS)})")
            with z.open(info) as f:
                version = npy.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise DataError(f"{path}: array {name!r} has npy format {version}, not one numpy.savez writes")
                read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, _, dtype = read(f)
            if dtype.hasobject:
                raise DataError(f"{path}: array {name!r} holds Python objects (dtype {dtype}): loading it would "
                                "need unpickling, which can run code; eval writes numbers and strings only")
            size = math.prod(shape) * dtype.itemsize
            total += size
            if total > MAX_BYTES:
                raise DataError(f"{path}: array {name!r} is {shape} {dtype}, {size / 2**30:.2f} GiB uncompressed "
                                f"(the file: {path.stat().st_size / 2**20:.1f} MiB); a scores file of eval holds at "
                                f"most {MAX_BYTES / 2**30:.0f} GiB: refused before decompressing it")
            if info.file_size < size:
                raise DataError(f"{path}: array {name!r} is truncated ({info.file_size} bytes for {shape} {dtype})")
            headers[name] = (shape, dtype)
    return headers


def load(path: str) -> dict[str, np.ndarray]:
    """The arrays of an eval scores file, checked to be what eval writes before any is decompressed."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such scores file (write one with python -m tanet_lightning.eval)")
    try:
        headers = array_headers(p)
    except BAD_ERRORS as e:
        raise DataError(f"{path}: a damaged scores file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("scores", "labels") if k not in headers]
    if missing or not {"video_idx", "video_names"} & set(headers):
        raise DataError(f"{path}: no {missing or 'video_idx or video_names'} array: not a scores file of "
                        "python -m tanet_lightning.eval")
    rows = headers["scores"][0][:1]
    for name, (shape, dtype) in headers.items():
        ndim, kinds = ARRAYS[name]
        if len(shape) != ndim or dtype.kind not in kinds or shape[:1] != rows or 0 in shape[1:]:
            raise DataError(f"{path}: array {name!r} is {shape} {dtype}; eval writes {ndim}-D arrays of kind "
                            f"{kinds!r} with one row per video ({rows[0] if rows else '?'} videos in 'scores')")
    try:
        with np.load(p, allow_pickle=False) as f:
            run = {k: f[k] for k in f.files}
    except BAD_ERRORS as e:
        raise DataError(f"{path}: a damaged scores file ({type(e).__name__}: {e})") from None
    num_classes = run["scores"].shape[1]
    if run["labels"].size and not (run["labels"].min() >= 0 and run["labels"].max() < num_classes):
        raise DataError(f"{path}: labels outside 0..{num_classes - 1}, the classes of its scores")
    if not np.isfinite(run["scores"]).all():
        raise DataError(f"{path}: scores that are not finite (NaN or inf): the model diverged, or the file was edited")
    return run


def video_keys(run: dict[str, np.ndarray]) -> list:
    """Each row's video: its name when the file carries names (robust to reordered lists), else its index."""
    if "video_names" in run:
        return [str(n) for n in run["video_names"]]
    return run["video_idx"].tolist()


def ensemble(paths: Sequence[str], mode: str = "prob", weights: Sequence[float] | None = None) -> dict:
    if mode not in ("prob", "logits"):
        raise ConfigError(f"--mode must be 'prob' or 'logits', got {mode!r}")
    runs = [load(p) for p in paths]
    weights = list(weights or [1.0] * len(runs))
    if len(weights) != len(runs):
        raise ConfigError(f"--weights: {len(weights)} weights for {len(runs)} score files")
    if len({"video_names" in r for r in runs}) > 1:
        raise DataError("some score files name their videos and some do not: cannot match them; "
                         "re-run python -m tanet_lightning.eval for the old ones")
    keys = [video_keys(r) for r in runs]
    for path, k in zip(paths, keys):
        if len(set(k)) != len(k):
            raise DataError(f"{path}: {len(k) - len(set(k))} videos have more than one row: not a scores file of eval")
    for path, k in zip(paths[1:], keys[1:]):
        if set(k) != set(keys[0]):
            only = sorted(set(k) ^ set(keys[0]), key=str)
            raise DataError(f"{path} and {paths[0]} cover different videos ({len(only)} in only one of them, "
                             f"e.g. {only[:3]}): ensemble scores of the same split")
    common = keys[0]
    total, labels = 0.0, None
    for run, k, w, path in zip(runs, keys, weights, paths):
        order = {v: i for i, v in enumerate(k)}
        rows = np.asarray([order[v] for v in common])
        scores = torch.from_numpy(run["scores"][rows]).double()
        if labels is None:
            labels = run["labels"][rows]
        elif not np.array_equal(labels, run["labels"][rows]):
            raise DataError(f"{path}: labels differ from {paths[0]} for the same videos (different splits?)")
        total = total + w * (scores.softmax(-1) if mode == "prob" else scores)
    scores = total / sum(weights)
    metrics = accuracy_metrics(scores.shape[1], "ensemble/")(scores.float(), torch.from_numpy(labels).long())
    return {"num_videos": len(common), **{k: v.item() for k, v in metrics.items()}}
