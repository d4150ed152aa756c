"""The files a run leaves beside its checkpoints: the resolved config, bad_files.tsv, metrics.json."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..base.files import atomic_write_json, atomic_write_text

METRICS = "metrics.json"


def output_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


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
