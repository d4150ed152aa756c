"""Instantiation from the config: the DataModule, callback/logger groups, diagnostics, seeding, and the network's
size (the LightningModule is built by ``training.module.instantiate_model``)."""

from __future__ import annotations

import copy
import re
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..base.errors import ConfigError
from ..data.formats import DatasetNotFoundError
from ..models.flops import count

NO_DATASET_HINT = (
    "No such dataset on this machine? `+preset=synthetic` runs the same experiment on the embedded "
    "synthetic motion videos (generated on first use, no download)."
)


def instantiate_data(cfg: DictConfig):
    """The DataModule of ``cfg.data``; a missing or malformed dataset is a ConfigError that says what to set."""
    try:
        datamodule = instantiate(cfg.data)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, DatasetNotFoundError) and cfg.data.get("format") != "synthetic":
            raise ConfigError(f"{cause}\n{NO_DATASET_HINT}") from None
        if isinstance(cause, ValueError):  # AnnotationError, or a value the DataModule refuses
            raise ConfigError(str(cause)) from None
        raise
    if hasattr(datamodule, "prepare_args"):  # the `prepare` command it suggests names this launch's data
        datamodule.prepare_args = launch_data_args()
    return datamodule


def launch_data_args() -> list[str] | None:
    """``data=NAME`` and the ``data.*``/``paths.*`` overrides of this Hydra launch (None outside one): what
    another application (``prepare``) needs to read the same dataset."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    choice = hc.runtime.choices.get("data")
    if not choice:
        return None
    given = [o for o in hc.overrides.task if re.match(r"[+~]*(data|paths)\.", o)]
    return [f"data={choice}", *given]


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


def instantiate_diagnostics(cfg: DictConfig) -> list[L.Callback]:
    """The test-time diagnostic callbacks a command asked for (``+diagnose=time``); none by default."""
    return [instantiate(cfg.diagnose)] if cfg.get("diagnose") else []


def model_complexity(net: torch.nn.Module, datamodule) -> dict[str, float]:
    """Parameters and paper-convention GFLOPs of one training-size clip, counted on the meta device."""
    size = datamodule.settings.crop_size
    flops, _, params = count(copy.deepcopy(net).to_empty(device="meta"), (1, net.num_frames, 3, size, size))
    return {"model/params": float(params), "model/gflops": round(flops, 4)}
