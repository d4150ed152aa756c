"""Instantiation from the config: the DataModule, the model, callback/logger groups, seeding, and the
checkpoint a run starts from."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..base.errors import ConfigError
from ..data.datasets import DatasetNotFoundError
from ..models.checkpoint import CheckpointError, load_checkpoint_file


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """A checkpoint of this project (weights and the model config that made them); other files are named
    for what they are."""
    try:
        ckpt = load_checkpoint_file(path, key)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ConfigError(f"{key}={path} is a bare weights file, not a checkpoint of this project (it has no "
                          "saved model config): load ImageNet weights with model.pretrained_path=FILE")
    return ckpt


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
        if isinstance(cause, ValueError):  # AnnotationError, or a value the DataModule refuses
            raise ConfigError(str(cause)) from None
        raise


def instantiate_model(cfg: DictConfig, **kwargs):
    """The LightningModule of ``cfg.model``; an argument its constructors refuse (a position a block does
    not have, a beta that does not divide the channels...) is a ConfigError with the constructor's message."""
    try:
        return instantiate(cfg.model, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ValueError):
            raise ConfigError(f"model: {e.__cause__}") from None
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


def model_complexity(net: torch.nn.Module, datamodule) -> dict[str, float]:
    """Parameters and paper-convention GFLOPs of one training-size clip, counted on the meta device."""
    from ..analysis.complexity import count

    size = getattr(datamodule, "transform_args", {}).get("crop_size", 224)
    flops, _, params = count(copy.deepcopy(net).to_empty(device="meta"), (1, net.num_frames, 3, size, size))
    return {"model/params": float(params), "model/gflops": round(flops, 4)}


def check_checkpoint_fits(ckpt: dict, path: str | Path, model) -> None:
    """The checkpoint's clip length and classes must be the model's: say which key to change."""
    hp, mine = ckpt["hyper_parameters"], model.hparams
    if hp.get("num_frames") != mine.num_frames:
        raise ConfigError(f"{path} was trained with num_frames={hp.get('num_frames')} but data.num_frames="
                          f"{mine.num_frames}: TAM's weights depend on T; set data.num_frames={hp.get('num_frames')}")
    if hp.get("num_classes") != mine.num_classes:
        raise ConfigError(f"{path} has {hp.get('num_classes')} classes but the data has {mine.num_classes}: "
                          "evaluate on the dataset it was trained on (fine-tuning on new classes is not a resume)")


