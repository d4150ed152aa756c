"""Where the Hydra configs live, and the few OmegaConf resolvers they use."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from omegaconf import OmegaConf


def config_dir() -> str:
    """``conf/`` inside an installed wheel, else the repository's ``conf/`` (editable or source checkout)."""
    packaged = Path(__file__).parent / "conf"
    if packaged.is_dir():
        return str(packaged)
    source = Path(__file__).resolve().parents[2] / "conf"
    if source.is_dir():
        return str(source)
    raise FileNotFoundError(f"Hydra configs not found in {packaged} or {source}; reinstall the package")


def run_name(overrides: str, seed) -> str:
    """A readable, filesystem-safe run name: the overrides (or 'default') and the seed.

    Long names are cut, with a hash of the whole so that jobs differing only at the end stay apart.
    """
    name = re.sub(r"[^\w.,=+\-\[\]{}:]+", "_", overrides.replace("/", ".")) or "default"
    if len(name) > 160:
        name = f"{name[:150]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return f"{name},seed={seed}"


def wandb_offline() -> bool:
    return not (os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").is_file()
                and "api.wandb.ai" in (Path.home() / ".netrc").read_text(errors="ignore"))


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("tanet.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("tanet.wandb_offline", wandb_offline, replace=True)


register_resolvers()
