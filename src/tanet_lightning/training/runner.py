"""What train.py and eval.py share: config checks, instantiation, run files, W&B hygiene."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..data.datasets import AnnotationError, DatasetNotFoundError

from ..models.backbones import backbone_family
from ..models.temporal import SPECIAL_MODULES, TEMPORAL_MODULES

log = logging.getLogger("tanet_lightning")


class ConfigError(ValueError):
    """A bad configuration, reported before any data is read or any step is taken."""


def check_config(cfg: DictConfig) -> None:
    """Fail early with the offending key named: unknown backbone/temporal module, T mismatch, ..."""
    model = cfg.get("model")
    if model is not None:
        try:
            backbone_family(model.backbone)
        except ValueError as e:
            raise ConfigError(f"model.backbone: {e}") from None
        name = model.temporal.name
        if name not in TEMPORAL_MODULES and name not in SPECIAL_MODULES:
            known = sorted([*TEMPORAL_MODULES, *SPECIAL_MODULES])
            raise ConfigError(f"model/temporal={name!r} is not a temporal module; choose one of {known}")
        if model.num_frames != cfg.data.num_frames:
            raise ConfigError(
                f"model.num_frames={model.num_frames} but data.num_frames={cfg.data.num_frames}: "
                "the clip length must equal the model's T (TAM has no temporal downsampling); set both"
            )
        if model.position not in ("a", "b", "c", "d"):
            raise ConfigError(f"model.position={model.position!r}; choose one of a, b, c, d")


NO_DATASET_HINT = (
    "No such dataset on this machine? `+preset=synthetic` runs the same experiment on the embedded "
    "synthetic motion videos (generated on first use, no download)."
)


def instantiate_data(cfg: DictConfig):
    """The DataModule of ``cfg.data``; a missing or malformed dataset is a ConfigError that says what to set."""
    try:
        return instantiate(cfg.data)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, DatasetNotFoundError) and cfg.data.get("format") != "synthetic":
            raise ConfigError(f"{cause}\n{NO_DATASET_HINT}") from None
        if isinstance(cause, AnnotationError):
            raise ConfigError(str(cause)) from None
        raise


def seed(cfg: DictConfig) -> None:
    """Seed everything (0 is a seed; null skips) and cap the CPU threads when asked."""
    if cfg.get("torch_threads"):  # e.g. 1 per job when several jobs share a small machine
        torch.set_num_threads(int(cfg.torch_threads))
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)


def instantiate_dict(node: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every entry of a callbacks/logger group (null disables one); no `_target_` is an error."""
    out = []
    for key, entry in (node or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise ConfigError(f"{what}.{key} has no _target_; every {what} entry must be instantiable")
        out.append(instantiate(entry))
    return out


def output_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_resolved_config(cfg: DictConfig, path: Path) -> dict:
    """The resolved config beside the run (Hydra's .hydra/config.yaml keeps interpolations)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (path / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    return resolved


def log_config(loggers: list, resolved: dict, model: torch.nn.Module | None = None) -> None:
    params = dict(resolved)
    if model is not None:
        params["params/total"] = sum(p.numel() for p in model.parameters())
        params["params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for lg in loggers:
        lg.log_hyperparams(params)


def model_complexity(net: torch.nn.Module, datamodule) -> dict[str, float]:
    """Parameters and paper-convention GFLOPs of one training-size clip, counted on the meta device."""
    from ..complexity import count

    size = getattr(datamodule, "transform_args", {}).get("crop_size", 224)
    flops, _, params = count(copy.deepcopy(net).to_empty(device="meta"), (1, net.num_frames, 3, size, size))
    return {"model/params": float(params), "model/gflops": round(flops, 4)}


def log_summary(loggers: list, values: dict[str, float]) -> None:
    """Values measured once per run (parameters, GFLOPs) into the W&B run summary, where the sweep's
    W&B report charts them per run; the CSV/TensorBoard loggers have them in metrics.json already."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update(values)


def to_python(metrics: dict) -> dict[str, float]:
    return {k: (v.item() if isinstance(v, torch.Tensor) else float(v)) for k, v in metrics.items()}


def write_metrics(path: Path, metrics: dict[str, float]) -> None:
    (path / "metrics.json").write_text(json.dumps(dict(sorted(metrics.items())), indent=1) + "\n")


def finish_wandb() -> None:
    """End the W&B run of this job so that the next job of a sweep does not append to it."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
