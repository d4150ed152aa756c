"""Config checks that need no data: values that can never work, refused with the key named."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from ..base.errors import ConfigError
from ..models.backbones import backbone_family
from ..models.temporal import TEMPORAL
from .module import TAM_FAMILY


def check_config(cfg: DictConfig) -> None:
    """Fail early with the offending key named: unknown backbone/temporal module, T mismatch, ..."""
    model = cfg.get("model")
    if model is not None:
        try:
            backbone_family(model.backbone)
        except ValueError as e:
            raise ConfigError(f"model.backbone: {e}") from None
        name = model.temporal.name
        if name not in TEMPORAL:
            known = sorted(TEMPORAL)
            raise ConfigError(f"model/temporal={name!r} is not a temporal module; choose one of {known}")
        if model.num_frames != cfg.data.num_frames:
            raise ConfigError(
                f"model.num_frames={model.num_frames} but data.num_frames={cfg.data.num_frames}: "
                "the clip length must equal the model's T (TAM has no temporal downsampling); set both"
            )
        if model.position not in (None, "a", "b", "c", "d"):
            raise ConfigError(f"model.position={model.position!r}; choose one of a, b, c, d (null: its own place)")
        given = [o for o in _command_line() if o.lstrip("+~").startswith("model.tam")]
        if name not in TAM_FAMILY and given:  # configs may carry model.tam for any module; a user's value is a mistake
            raise ConfigError(f"{given[0]} is given but model/temporal={name} does not use it (only "
                              f"{', '.join(TAM_FAMILY)} do); drop it or pick a TAM module")
    check_values(cfg)


def _command_line() -> list[str]:
    """This job's overrides (command line and sweep point) when running under Hydra, else none."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_pretrained(model: DictConfig) -> None:
    """``model.pretrained=true`` needs the weights: in the local Hugging Face cache, or a reachable hub."""
    if not model.get("pretrained") or model.get("pretrained_path"):
        return
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    if (hub.expanduser() / f"models--timm--{model.backbone}").is_dir() or _hub_reachable():
        return
    raise ConfigError(
        f"model.pretrained=true downloads the ImageNet weights of {model.backbone}, but the weight hub cannot "
        "be reached from here: download them elsewhere and set model.pretrained_path=FILE "
        "(or model.pretrained=false to train from scratch)")


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_values(cfg: DictConfig) -> None:
    """Values that can never work, refused at config time with the key named."""
    seed = cfg.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"seed={seed!r} must be an integer (or null for no seeding)")
    opt = cfg.get("optimizer")
    if opt is not None and "lr" in opt and not (isinstance(opt.lr, (int, float)) and opt.lr > 0):
        raise ConfigError(f"optimizer.lr={opt.lr!r} must be a positive number")
    data = cfg.get("data")
    if data is not None:
        for key in ("batch_size", "num_frames"):
            value = data.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{key}={value!r} must be a positive integer")
        if data.get("num_workers") is not None and data.num_workers < 0:
            raise ConfigError(f"data.num_workers={data.num_workers} must be >= 0")
    trainer = cfg.get("trainer")
    if trainer is not None and cfg.get("train", True):
        epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
        if (epochs is None or epochs < 1) and (steps is None or steps < 1):
            raise ConfigError(f"trainer.max_epochs={epochs} must be >= 1 (the schedules are defined per epoch); "
                              "or bound the run with trainer.max_steps")
    paths = cfg.get("paths", {})
    for key in ("log_dir", "data_dir"):
        path = paths.get(key)
        # an existing data directory may be read-only (a complete dataset: nothing is written there)
        if path is not None and not (_writable(Path(path)) or key == "data_dir" and Path(path).is_dir()):
            raise ConfigError(f"paths.{key}={path} is not a writable directory; point it elsewhere "
                              f"(TANET_{key.split('_')[0].upper()}_DIR=...)")


def _writable(path: Path) -> bool:
    """Writable, or creatable: the nearest existing ancestor is a writable directory."""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK)
