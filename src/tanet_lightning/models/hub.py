"""Hub-ready checkpoints: ``save_pretrained(dir)``, ``from_pretrained(dir_or_repo)``, ``push_to_hub``.

A folder in the layout ``huggingface_hub`` expects: ``model.safetensors`` (the network's state dict),
``config.json`` (the network's arguments as ``create_video_model`` takes them, the test protocol, the
class names, and what is known of the data, results and training) and a model card ``README.md``
(models/card.py). ``models.load.Checkpoint`` reads such a folder as it reads a checkpoint file, so eval,
predict and ``model.init_from`` take it. The Hub itself is reached only by ``from_pretrained`` with a repo
id (``snapshot_download``) and by ``push_to_hub``; nothing else here touches the network.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import save_file

from .. import __version__
from ..base.errors import CheckpointError
from ..base.files import atomic_write_json, atomic_write_text
from .card import render_card
from .checkpoint import HUB_CARD, HUB_CONFIG, HUB_WEIGHTS, load_pretrained_folder
from .flops import count

__all__ = ["FORMAT", "INFO_KEYS", "HubMixin", "plain", "pretrained_config", "push_to_hub", "resolve_pretrained",
           "write_pretrained"]

FORMAT = 1  # config.json's layout version
# what a caller may add to config.json besides the network: the card shows each
# dataset: a name; data_fingerprint: {split: {...}}; results: {top1, top5 (%), split, num_videos, views,
# checkpoint, source}; training: {command, converted_from}
INFO_KEYS = ("dataset", "data_fingerprint", "results", "training")
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def plain(value: Any) -> Any:
    """JSON types all the way down (DictConfig / ListConfig / tuples included)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


def complexity(net: torch.nn.Module, crop: int, views: int = 1) -> dict:
    """Parameters and paper-convention GFLOPs of one view (1, T, 3, crop, crop), counted on the meta device."""
    clip = (1, net.num_frames, 3, int(crop), int(crop))
    gflops, _, params = count(copy.deepcopy(net).to_empty(device="meta"), clip)
    return {"params": int(params), "gflops_per_view": round(gflops, 4), "gflops_per_video": round(gflops * views, 4),
            "clip": list(clip), "views": int(views)}


def pretrained_config(net: torch.nn.Module, *, class_names=None, protocol: Mapping | None = None,
                      view_average: str = "logits", info: Mapping | None = None) -> dict:
    """config.json of ``net`` (built by ``create_video_model``): everything ``from_pretrained``, predict
    and the model card need."""
    if getattr(net, "model_args", None) is None:
        raise ValueError("save_pretrained needs a network built by create_video_model (it records the arguments "
                         "that rebuild it)")
    if class_names is not None and len(class_names) != net.num_classes:
        raise ValueError(f"{len(class_names)} class names for a {net.num_classes}-class model")
    views = 1
    if protocol:
        clips, crops = (int(v) for v in str(protocol.get("test_views", "1x1")).split("x"))
        views = clips * crops
    crop = int(protocol["crop_size"]) if protocol and protocol.get("crop_size") else 224
    config = {
        "library_name": "tanet-lightning",
        "project_version": __version__,
        "format": FORMAT,
        "model": plain(net.model_args),
        "architecture": plain(net.architecture),
        "view_average": view_average,
        "class_names": list(class_names) if class_names is not None else None,
        "test_protocol": plain(protocol) if protocol else None,
        "complexity": complexity(net, crop, views),
    }
    unknown = sorted(set(info or {}) - set(INFO_KEYS))
    if unknown:
        raise ValueError(f"info keys {unknown} are not among {INFO_KEYS}")
    config.update({k: plain(v) for k, v in (info or {}).items() if v is not None})
    return config


def write_pretrained(directory: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], config: Mapping) -> Path:
    """model.safetensors, config.json and README.md (the model card) into ``directory`` (created)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tmp = out / f".{HUB_WEIGHTS}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt", "library": "tanet-lightning"})
    os.replace(tmp, out / HUB_WEIGHTS)
    config = json.loads(json.dumps(config, sort_keys=True))  # the card shows what config.json says, in its order
    atomic_write_json(out / HUB_CONFIG, config)
    atomic_write_text(out / HUB_CARD, render_card(config))
    return out


def resolve_pretrained(dir_or_repo: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | None = None, token: str | None = None) -> Path:
    """A local save_pretrained folder as it is; a Hub repo id (``owner/name``) downloaded to the local cache."""
    path = Path(dir_or_repo).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{dir_or_repo} is a file: from_pretrained takes a save_pretrained folder or a Hub "
                              "repo id (a checkpoint file loads with Predictor.from_checkpoint or models.load_model)")
    if not REPO_ID.fullmatch(str(dir_or_repo)):
        raise CheckpointError(f"{dir_or_repo}: no such folder, and not a Hub repo id (owner/name)")
    try:
        return Path(snapshot_download(str(dir_or_repo), revision=revision, cache_dir=cache_dir, token=token,
                                      allow_patterns=[HUB_WEIGHTS, HUB_CONFIG, HUB_CARD],
                                      library_name="tanet-lightning", library_version=__version__))
    except Exception as e:  # huggingface_hub's offline, not-found and auth errors share no narrower base
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{dir_or_repo}: no such local folder, and the Hub download failed "
                              f"({type(e).__name__}: {reason[:300]})") from None


def push_to_hub(directory: str | os.PathLike, repo_id: str, *, private: bool | None = None,
                token: str | None = None, commit_message: str = "Upload a TANet (tanet-lightning)") -> str:
    """Create ``repo_id`` if needed and upload the save_pretrained folder; returns the commit's URL.
    A thin wrapper over ``huggingface_hub.HfApi`` (needs a login: ``hf auth login`` or ``HF_TOKEN``)."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(directory), commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for ``VideoClassifier``, which records
    its ``model_args`` and ``architecture`` and rebuilds itself with ``from_model_args``."""

    def save_pretrained(self, directory: str | os.PathLike, *, class_names=None, protocol: Mapping | None = None,
                        view_average: str = "logits", info: Mapping | None = None) -> Path:
        """Write the folder; ``protocol`` (``TestProtocol.to_dict()``) and ``class_names`` make it usable by
        predict and eval, ``info`` (INFO_KEYS) fills the model card."""
        config = pretrained_config(self, class_names=class_names, protocol=protocol, view_average=view_average,
                                   info=info)
        return write_pretrained(directory, self.state_dict(), config)

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | os.PathLike, **download: Any):
        """The network of a save_pretrained folder or Hub repo, every weight loaded, in eval mode.
        ``download``: ``revision``, ``cache_dir``, ``token`` for a repo id."""
        folder = resolve_pretrained(dir_or_repo, **download)
        config, state = load_pretrained_folder(folder, "from_pretrained")
        try:
            net = cls.from_model_args(config["model"], f"{folder}/{HUB_CONFIG}")
        except CheckpointError:
            raise
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{folder}/{HUB_CONFIG}: its model arguments do not build a model: {e}") from None
        own = net.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(f"{folder}: {HUB_WEIGHTS} does not fit the model of {HUB_CONFIG} (missing "
                                  f"{missing[:6]}, unexpected {unexpected[:6]}, shapes {shapes[:6]})")
        net.load_state_dict(state, strict=True)
        return net.eval()

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    **save: Any) -> str:
        """save_pretrained into a temporary folder, then upload it (``push_to_hub`` above)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, **save)
            return push_to_hub(tmp, repo_id, private=private, token=token)
