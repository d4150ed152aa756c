"""The one place a checkpoint or weights file is opened: ``torch.load(weights_only=True)``, with errors
that say what the file is instead of an unpickler's traceback; and a ``save_pretrained`` folder
(``config.json`` + ``model.safetensors``, models/hub.py). Callers add what they need on top: a project
checkpoint and its model (``models.load.Checkpoint``, ``load_model``), ``convert`` any peer's layout,
backbones a timm/torchvision state dict."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..base.errors import CheckpointError

__all__ = ["CheckpointError", "HUB_CARD", "HUB_CONFIG", "HUB_WEIGHTS", "load_checkpoint_file", "load_pretrained_folder"]

# the files of a save_pretrained folder, named as huggingface_hub expects them
HUB_WEIGHTS, HUB_CONFIG, HUB_CARD = "model.safetensors", "config.json", "README.md"


def load_checkpoint_file(path: str | os.PathLike, key: str | None = None) -> dict:
    """The file's top-level dict. ``key`` names the setting the path came from (e.g. ``ckpt_path``)."""
    path = Path(path)
    where = f"{key}={path}" if key else str(path)
    if path.is_dir():
        raise CheckpointError(f"{where} is a folder, not a checkpoint file (a save_pretrained folder holds "
                              f"{HUB_CONFIG} and {HUB_WEIGHTS}; this one has {HUB_CONFIG}: "
                              f"{(path / HUB_CONFIG).is_file()})")
    if not path.is_file():
        raise CheckpointError(f"{where}: no such checkpoint file")
    with open(path, "rb") as f:
        pickled = f.read(1) == b"\x80"  # the pickle protocol mark
    # torch.save writes a zip since torch 1.6, a bare pickle before (the official TAM release)
    if not pickled and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{where} is not a PyTorch checkpoint (not a torch.save file: a text file, a "
                              "video, or a truncated download?)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{where}: refused: the file needs arbitrary unpickling, which can run code "
            f"(torch.load(weights_only=True) failed: {reason}). If you trust it, re-save just the weights "
            f"elsewhere: torch.save({{'state_dict': torch.load(f, weights_only=False)['state_dict']}}, 'clean.pth')"
        ) from None
    except Exception as e:  # a damaged zip or pickle
        raise CheckpointError(f"{where} cannot be read as a checkpoint: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict (a state dict or a checkpoint holding one), "
                              f"got {type(obj).__name__}")
    return dict(obj)


def load_pretrained_folder(path: str | os.PathLike, key: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(``config.json``, the weights of ``model.safetensors``) of a folder written by ``save_pretrained``."""
    path = Path(path)
    where = f"{key}={path}" if key else str(path)
    missing = [name for name in (HUB_CONFIG, HUB_WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{where} is a folder without {' and '.join(missing)}: a save_pretrained folder "
                              f"holds {HUB_WEIGHTS}, {HUB_CONFIG} and {HUB_CARD} (python -m tanet_lightning.export "
                              "ckpt_path=CKPT format=hf out=DIR writes one)")
    try:
        config = json.loads((path / HUB_CONFIG).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where}/{HUB_CONFIG} is not JSON: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{where}/{HUB_CONFIG} has no \"model\" mapping (the network's arguments): it was "
                              "not written by this project's save_pretrained")
    try:
        state = load_file(path / HUB_WEIGHTS, device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{where}/{HUB_WEIGHTS} cannot be read: {e}") from None
    return config, state
