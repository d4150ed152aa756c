"""A project checkpoint -> a ready model: the one way every application reads one.

A project checkpoint (written by training or by ``tanet_lightning.convert``) holds the weights
(``state_dict``, the LightningModule's: the network under ``net.``), the ``model.*`` settings that built
them (``hyper_parameters``, flat), the class names and the test protocol (``data_config``). A
save_pretrained folder (models/hub.py: ``config.json`` + ``model.safetensors``) is read into the same
dict (``read_checkpoint``), so every application takes either. ``Checkpoint.read`` decides whether a
path is one; ``load_model(path)`` is the network, in eval mode, with every weight loaded;
``models.fit.check_fits`` says whether it fits a run's data. The network's arguments are read from the
file once, by ``video.model_args_from_file``: nothing in a checkpoint makes another file be opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ..base.errors import CheckpointError
from .checkpoint import HUB_CONFIG, load_checkpoint_file, load_pretrained_folder
from .hub import INFO_KEYS
from .video import NET_ARGS, VideoClassifier, create_video_model, model_args_from_file

__all__ = ["NET_ARGS", "Checkpoint", "load_model", "net_kwargs", "read_checkpoint", "source_of"]


def net_kwargs(hparams: dict, where: str) -> dict:
    """``create_video_model``'s arguments among a checkpoint's flat hyper-parameters read from the file
    ``where`` names (``video.model_args_from_file``); ``pretrained=False``: the checkpoint holds every weight."""
    return model_args_from_file(hparams, where)


def source_of(path: str | os.PathLike, key: str | None = None) -> str:
    """The setting and the file a checkpoint's model config was read from, for messages: a save_pretrained
    folder's is its config.json."""
    where = f"{key}={path}" if key else str(path)
    return f"{where} (its {HUB_CONFIG})" if Path(path).is_dir() else where


def read_checkpoint(path: str | os.PathLike, key: str | None = None) -> dict:
    """A checkpoint file's top-level dict; a save_pretrained folder as the same dict (its config.json under
    ``pretrained_config``)."""
    if not Path(path).is_dir():
        return load_checkpoint_file(path, key)
    config, state = load_pretrained_folder(path, key)
    raw = {"state_dict": {f"net.{k}": v for k, v in state.items()},
           "hyper_parameters": {**config["model"], "view_average": config.get("view_average", "logits")},
           "class_names": config.get("class_names"), "data_config": config.get("test_protocol"),
           "pretrained_config": config}
    if config.get("data_fingerprint"):
        raw["data_fingerprint"] = config["data_fingerprint"]
    return raw


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    key: str  # the setting the path came from, named in every message (ckpt_path, model.init_from, ...)
    raw: dict

    @classmethod
    def read(cls, path: str | os.PathLike, key: str = "ckpt_path") -> Checkpoint:
        """Open ``path`` (a file or a save_pretrained folder); one that is not a project checkpoint is refused
        for what it is."""
        raw = read_checkpoint(path, key)
        if not isinstance(raw.get("state_dict"), dict) or not isinstance(raw.get("hyper_parameters"), dict):
            raise CheckpointError(
                f"{key}={path} is not a checkpoint of this project (a bare weights file: it has no saved model "
                "config): ImageNet weights go to model.pretrained_path=FILE, a peer's release through "
                f"python -m tanet_lightning.convert {path} --out model.ckpt")
        if "num_classes" not in raw["hyper_parameters"]:
            raise CheckpointError(f"{key}={path}: its saved model config has no num_classes")
        return cls(Path(path), key, raw)

    @property
    def where(self) -> str:
        return f"{self.key}={self.path}"

    @property
    def hparams(self) -> dict:
        return self.raw["hyper_parameters"]

    @cached_property
    def net_kwargs(self) -> dict:
        """``create_video_model``'s arguments; ``pretrained=False``: the checkpoint holds every weight. Checked
        when the network is first built from them (eval, predict, visualize, export, convert, init_from), not
        by a resume, which builds its network from the run's own config."""
        return net_kwargs(self.hparams, source_of(self.path, self.key))

    @property
    def num_frames(self) -> int:
        return int(self.hparams.get("num_frames", NET_ARGS["num_frames"].default))

    @property
    def num_classes(self) -> int:
        return int(self.hparams["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        """The classes in classifier order; None for checkpoints saved without them."""
        names = self.raw.get("class_names")
        return list(names) if names else None

    @property
    def data_config(self) -> dict | None:
        """The saved test protocol (``TestProtocol.to_dict()``); None for checkpoints saved without it."""
        data = self.raw.get("data_config")
        return dict(data) if data else None

    @property
    def info(self) -> dict:
        """What it says about its data, results and training (models.hub.INFO_KEYS), for a model card."""
        info = {k: v for k, v in (self.raw.get("pretrained_config") or {}).items() if k in INFO_KEYS and v}
        if self.raw.get("data_fingerprint"):
            info["data_fingerprint"] = self.raw["data_fingerprint"]
        if (self.data_config or {}).get("dataset"):
            info.setdefault("dataset", self.data_config["dataset"])
        if self.raw.get("converted_from"):
            info["training"] = {**info.get("training", {}), "converted_from": dict(self.raw["converted_from"])}
        return info

    @cached_property
    def net_state(self) -> dict[str, torch.Tensor]:
        return {k.removeprefix("net."): v for k, v in self.raw["state_dict"].items() if k.startswith("net.")}

    def load_weights(self, net: VideoClassifier) -> VideoClassifier:
        """Every network weight of the checkpoint into ``net`` (built from ``net_kwargs``), strictly."""
        own, state = net.state_dict(), self.net_state
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(f"{self.where}: its weights do not fit the model its config describes "
                                  f"(missing {missing[:6]}, unexpected {unexpected[:6]}, shapes {shapes[:6]}); "
                                  "was it edited by hand?")
        net.load_state_dict(state, strict=True)
        return net

    def build(self) -> VideoClassifier:
        """The network with every weight loaded, in eval mode."""
        kwargs = self.net_kwargs  # refused here (CheckpointError) if they name a file
        try:
            net = create_video_model(**kwargs)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{self.where}: its saved model config does not build a model: {e}") from None
        return self.load_weights(net).eval()


def load_model(path: str | os.PathLike, key: str = "ckpt_path") -> VideoClassifier:
    """A project checkpoint file -> its network, every weight loaded, in eval mode."""
    return Checkpoint.read(path, key).build()
