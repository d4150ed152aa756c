"""What a run is of: the resolved config minus the keys that cannot change results (``IGNORED``), its hash,
and for an evaluation the checkpoint it tests (file and content). ``run.json`` keeps them; a command whose
config differs is another run (runs/lifecycle.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# the keys hydra.job.config.override_dirname leaves out of the run name (where and how a run is logged,
# where to resume from), plus overwrite: they may differ between the attempts of one run
IGNORED = ("ckpt_path", "logger", "paths", "trainer.enable_progress_bar", "overwrite", "hydra")


def ignored(key: str) -> bool:
    """Whether a dotted config key is one of ``IGNORED`` or under one: it cannot change a run's results."""
    return any(key == i or key.startswith(i + ".") for i in IGNORED)


def config_of(cfg: DictConfig) -> dict[str, Any]:
    """The flat resolved config, minus ``IGNORED``; paths.* become placeholders before resolving, so a
    value built from them (checkpoint dirpath, data root) does not change when a run directory moves."""
    tree = OmegaConf.to_container(cfg, resolve=False)  # a plain copy: the job's config stays as it is
    for key in ("logger", "hydra"):  # not resolved at all (a W&B group's ${now:}, Hydra's runtime)
        tree.pop(key, None)
    tree["paths"] = {key: f"<paths.{key}>" for key in tree.get("paths") or {}}
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.create(tree), resolve=True), "")
    config = {k: v for k, v in flat.items() if not ignored(k)}
    tested = evaluated(cfg)
    if tested is not None:  # without fitting, the checkpoint tested is what the run is of: file and content
        config.update({f"evaluated.{k}": v for k, v in checkpoint_identity(tested).items()})
    return config


def evaluated(cfg: DictConfig) -> str | None:
    """The checkpoint a run tests without training it: ``eval``'s (whose config has no ``train`` key) and
    ``train=false``'s ``ckpt_path``; None for a run that fits (its ``ckpt_path`` only says where to resume)."""
    if OmegaConf.select(cfg, "train", default=False):
        return None
    tested = OmegaConf.select(cfg, "ckpt_path", default=None, throw_on_missing=False)
    return None if tested in (None, "last") else str(tested)


def checkpoint_label(ckpt: str) -> str:
    """A short name for a checkpoint path in a run name: its file name and a hash of its absolute path
    (relative paths are relative to the launch directory, the working directory of every application)."""
    path = os.path.abspath(ckpt)
    stem = re.sub(r"[^\w.+\-@%]", "_", Path(path).name.removesuffix(".ckpt"))[:40] or "ckpt"
    return f"{stem}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def checkpoint_identity(ckpt: str) -> dict[str, Any]:
    """What is evaluated: the absolute path and the content (bytes, sha256 of the file, or of a
    save_pretrained folder's files and names). A checkpoint rewritten at the same path is another run."""
    path = Path(os.path.abspath(ckpt))
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    digest, size = hashlib.sha256(), 0
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
    return {"path": str(path), "bytes": size, "sha256": digest.hexdigest() if files else None}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The keys whose values differ, old -> new (the first six, and how many more)."""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = [f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in keys[:6]]
    return "; ".join(shown) + (f"; and {len(keys) - 6} more" if len(keys) > 6 else "")
