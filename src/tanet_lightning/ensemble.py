"""Ensemble per-video scores: ``python -m tanet_lightning.ensemble a.npz b.npz [--mode prob]``.

Each file is an ``eval`` output (``scores.npz``). Videos are matched by ``video_idx`` (and must carry
the same label in every file); scores are averaged as softmax probabilities (default) or raw logits,
which is how TANet-En combines an 8-frame and a 16-frame model (paper Tables 6 and 7).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .training.module import accuracy_metrics


def load(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such scores file (write one with python -m tanet_lightning.eval)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def ensemble(paths: Sequence[str], mode: str = "prob", weights: Sequence[float] | None = None) -> dict:
    runs = [load(p) for p in paths]
    weights = list(weights or [1.0] * len(runs))
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} score files")
    common = sorted(set.intersection(*(set(r["video_idx"].tolist()) for r in runs)))
    if not common:
        raise ValueError("the score files share no video_idx: were they evaluated on the same split?")
    total, labels = 0.0, None
    for run, w, path in zip(runs, weights, paths):
        order = {v: i for i, v in enumerate(run["video_idx"].tolist())}
        rows = np.asarray([order[v] for v in common])
        scores = torch.from_numpy(run["scores"][rows]).double()
        if labels is None:
            labels = run["labels"][rows]
        elif not np.array_equal(labels, run["labels"][rows]):
            raise ValueError(f"{path}: labels differ from {paths[0]} for the same videos (different splits?)")
        total = total + w * (scores.softmax(-1) if mode == "prob" else scores)
    scores = total / sum(weights)
    metrics = accuracy_metrics(scores.shape[1], "ensemble/")(scores.float(), torch.from_numpy(labels).long())
    return {"num_videos": len(common), **{k: v.item() for k, v in metrics.items()}}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scores", nargs="+", help="scores.npz files from tanet_lightning.eval")
    p.add_argument("--mode", choices=["prob", "logits"], default="prob")
    p.add_argument("--weights", type=float, nargs="+")
    a = p.parse_args(argv)
    print(json.dumps(ensemble(a.scores, a.mode, a.weights), indent=1))


if __name__ == "__main__":
    main()
