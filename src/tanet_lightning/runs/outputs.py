"""The files a run leaves beside its checkpoints: the resolved config, bad_files.tsv, metrics.json; and
what a run directory says about one of its checkpoints (``run_info``, for a model card)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..base.files import atomic_write_json, atomic_write_text

METRICS = "metrics.json"


def save_resolved_config(cfg: DictConfig, path: Path) -> dict:
    """The resolved config beside the run (Hydra's .hydra/config.yaml keeps interpolations)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_text(path / "config_resolved.yaml", OmegaConf.to_yaml(resolved))
    return resolved


def write_bad_files(out: Path, rows: list[tuple[str, ...]]) -> None:
    """bad_files.tsv (split, path, reason) beside metrics.json: every unreadable file the run met."""
    if rows:
        lines = ["split\tpath\treason", *("\t".join(r) for r in rows)]
        atomic_write_text(out / "bad_files.tsv", "\n".join(lines) + "\n")


def write_metrics(path: Path, metrics: dict[str, float]) -> None:
    atomic_write_json(path / METRICS, metrics)


def to_python(metrics: dict) -> dict[str, float]:
    return {k: (v.item() if isinstance(v, torch.Tensor) else float(v)) for k, v in metrics.items()}


def run_info(ckpt_path: str | Path, callbacks: Mapping | None = None) -> dict:
    """What the training run of ``<run>/checkpoints/<file>.ckpt`` records: the dataset (Hydra's data choice),
    the training command, the test results (in %, with the checkpoint they were measured on: the run tests
    its best one, named by ``callbacks``, the checkpoint's own ModelCheckpoint state) and the split
    fingerprint when metrics.json has one. Empty for a file outside a run directory."""
    path = Path(ckpt_path)
    run, hydra = path.parent.parent, path.parent.parent / ".hydra"
    if path.parent.name != "checkpoints" or not hydra.is_dir():
        return {}
    info: dict = {}
    if (hydra / "overrides.yaml").is_file():
        overrides = OmegaConf.load(hydra / "overrides.yaml") or []
        info["training"] = {"command": " ".join(["python -m tanet_lightning.train", *map(shlex.quote, overrides)])}
    if (hydra / "hydra.yaml").is_file():
        data = OmegaConf.select(OmegaConf.load(hydra / "hydra.yaml"), "hydra.runtime.choices.data")
        if data:
            info["dataset"] = str(data)
    metrics = json.loads((run / METRICS).read_text()) if (run / METRICS).is_file() else {}
    if "test/top1" in metrics:
        results = {k: 100 * float(metrics[f"test/{k}"]) for k in ("top1", "top5", "mean_class_acc")
                   if f"test/{k}" in metrics}
        results.update(split="test", source="measured by the run's test")
        if metrics.get("test/num_videos"):
            results["num_videos"] = int(metrics["test/num_videos"])
        if (run / "config_resolved.yaml").is_file():
            views = OmegaConf.select(OmegaConf.load(run / "config_resolved.yaml"), "data.test_views")
            results["views"] = str(views) if views else None
        best = next((s.get("best_model_path") for k, s in (callbacks or {}).items()
                     if k.startswith("ModelCheckpoint") and isinstance(s, Mapping) and s.get("best_model_path")), None)
        tested = Path(best).name if best else None
        results["checkpoint"] = (tested if tested in (None, path.name)
                                 else f"{tested} of the same run (exported: {path.name})")
        info["results"] = {k: v for k, v in results.items() if v is not None}
    if metrics.get("data_fingerprint"):
        info["data_fingerprint"] = metrics["data_fingerprint"]
    return info
