"""Ensemble per-video scores (the application: ``python -m tanet_lightning.ensemble a.npz b.npz [--mode prob]``).

Each file is an ``eval`` output (``scores.npz``). Videos are matched by name (by ``video_idx`` in files
without names); files that cover different videos are refused, and labels must agree; scores are
averaged as softmax probabilities (default) or raw logits,
which is how TANet-En combines an 8-frame and a 16-frame model (paper Tables 6 and 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..base.errors import ConfigError, DataError
from ..base.metrics import accuracy_metrics


def load(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such scores file (write one with python -m tanet_lightning.eval)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


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
