"""Config checks that need no data and that the schema (config/schema) cannot make: a value the user
typed for a module that ignores it, and ImageNet weights this machine cannot reach."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from omegaconf import DictConfig

from ..base.errors import ConfigError, UserError
from ..models.temporal import TAM_FAMILY


def check_config(cfg: DictConfig) -> None:
    """What the schema (config/schema) cannot see: the command line's own words."""
    model = cfg.get("model")
    if model is not None:
        name = model.temporal.name
        given = [o for o in _command_line() if o.lstrip("+~").startswith("model.tam")]
        if name not in TAM_FAMILY and given:  # configs may carry model.tam for any module; a user's value is a mistake
            raise ConfigError(f"{given[0]} is given but model/temporal={name} does not use it (only "
                              f"{', '.join(TAM_FAMILY)} do); drop it or pick a TAM module")


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


class DiskFull(UserError):
    """The disk of the run directory filled up while the run wrote there (checkpoints, metrics, logs)."""


def disk_full_behind(e: BaseException, out: Path) -> DiskFull | None:
    """A DiskFull for an exception caused (at any depth: Lightning and fsspec wrap it) by a full disk or quota."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            named = seen.filename and str(seen.filename).startswith(str(out))  # (a library's temporary file: not)
            what = f"writing {seen.filename}" if named else "writing its checkpoints, metrics or logs"
            removed = _remove_partial_checkpoints(out)  # the room run.json needs to say `failed`
            what += f"; removed the partial checkpoint(s) {', '.join(removed)}" if removed else ""
            return DiskFull(f"no space left on the device of the run directory {out} ({what}): free space there, "
                            "then resume with the same command + ckpt_path=last (or give paths.log_dir=DIR on "
                            "another disk)")
        seen = seen.__cause__ or seen.__context__
    return None


def _remove_partial_checkpoints(out: Path) -> list[str]:
    """Checkpoints cut short by the full disk: a checkpoint is a zip archive, whose directory is written last."""
    import zipfile

    partial = [p for p in (*out.glob("checkpoints/*.ckpt"), *out.glob("hpc_ckpt_*.ckpt"))
               if p.is_file() and not zipfile.is_zipfile(p)]
    for p in partial:
        p.unlink()
    return [p.name for p in partial]
