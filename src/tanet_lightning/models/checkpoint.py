"""The one place a checkpoint or weights file is opened: ``torch.load(weights_only=True)``, with errors
that say what the file is instead of an unpickler's traceback. Callers add what they need on top:
a project checkpoint and its model (``models.load.Checkpoint``, ``load_model``), ``convert`` any peer's
layout, backbones a timm/torchvision state dict."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..base.errors import CheckpointError

__all__ = ["CheckpointError", "load_checkpoint_file"]


def load_checkpoint_file(path: str | os.PathLike, key: str | None = None) -> dict:
    """The file's top-level dict. ``key`` names the setting the path came from (e.g. ``ckpt_path``)."""
    path = Path(path)
    where = f"{key}={path}" if key else str(path)
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
