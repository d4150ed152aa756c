"""Classify video files: ``python -m tanet_lightning.predict ckpt_path=PATH inputs=[a.mp4,dir/] [topk=5]
[out=predictions.jsonl] [+data=NAME]``.

Everything comes from the checkpoint: the network, the class names and the test protocol of the data
it was trained or released with (sampler, clip length, short side, crop, clips x crops, normalisation),
so a Kinetics model is read with dense 8x8 clips and a Something-Something model with TSN segments.
With ``+data=NAME`` (a conf/data config), what differs between that data's test split and the one of the
checkpoint's run (videos, class list, flip map) is a warning, as in eval. ``+diagnose=time`` adds each
video's top class with its frames reversed, shuffled and frozen (``time`` in the JSON lines:
training/diagnose.py). ``ckpt_path`` may also be a save_pretrained folder (``export format=hf``). Python:
``Predictor.from_checkpoint(path).predict("a.mp4")``; ``Predictor.from_pretrained(dir_or_repo)``,
``predictor.save_pretrained(dir)`` and ``predictor.push_to_hub(repo_id)`` for the Hub layout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig
from tqdm import tqdm

from . import config
from .base.errors import CheckpointError, ConfigError, handle_user_errors
from .config import schema
from .data.files import find_videos
from .data.io import VideoDecodeError
from .data.protocol import TestProtocol
from .models.hub import push_to_hub, resolve_pretrained
from .models.load import Checkpoint
from .models.video import VideoClassifier
from .runs import build, fingerprints
from .training.diagnose import time_table, video_orders

log = logging.getLogger("tanet_lightning")


@dataclass
class Prediction:
    path: str
    classes: list[str]  # best first
    probs: list[float]
    indices: list[int]
    time: dict | None = None  # +diagnose=time: the top class under each frame order


class Predictor:
    """A checkpoint's network in eval mode plus what it needs to read a video the way it was tested.

    ``model`` maps a normalised clip batch (B, T, 3, H, W) to logits (B, num_classes). ``info`` is what the
    checkpoint says about its data, results and training (``models.hub.INFO_KEYS``), for a model card.
    """

    def __init__(self, model: VideoClassifier, class_names: Sequence[str], data_config: dict,
                 view_average: str = "logits", device: str | torch.device = "cpu", info: dict | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.view_average = view_average
        self.info = dict(info or {})
        self.protocol = TestProtocol.from_dict(data_config)
        if len(self.class_names) != model.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a {model.num_classes}-class model")

    @property
    def data_config(self) -> dict:
        return self.protocol.to_dict()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | Checkpoint, device: str | torch.device = "cpu",
                        views: str | None = None) -> Predictor:
        """A project checkpoint (trained, or written by ``tanet_lightning.convert``; a file, a save_pretrained
        folder or an opened ``Checkpoint``); ``views`` overrides the saved clips x crops (e.g. "1x1")."""
        ckpt = path if isinstance(path, Checkpoint) else Checkpoint.read(path)
        data = ckpt.data_config
        if data is None:
            raise CheckpointError(
                f"{ckpt.where}: the checkpoint has no saved data config (it predates predict); re-save it with "
                f"`python -m tanet_lightning.convert {ckpt.path} --out NEW.ckpt --data NAME`")
        if views is not None:
            data = {**data, "test_views": views}
        names = ckpt.class_names or [str(i) for i in range(ckpt.num_classes)]
        return cls(ckpt.build(), names, data, ckpt.hparams.get("view_average", "logits"), device, ckpt.info)

    @classmethod
    def from_pretrained(cls, dir_or_repo: str | os.PathLike, device: str | torch.device = "cpu",
                        views: str | None = None, **download) -> Predictor:
        """A save_pretrained folder, or a Hub repo id (downloaded; ``download``: revision, cache_dir, token)."""
        return cls.from_checkpoint(resolve_pretrained(dir_or_repo, **download), device, views)

    def save_pretrained(self, directory: str | os.PathLike, info: dict | None = None) -> Path:
        """model.safetensors + config.json (network, test protocol, class names) + the model card README.md;
        ``info`` adds to (or replaces keys of) ``self.info``."""
        model = self.model.to("cpu")
        try:
            return model.save_pretrained(directory, class_names=self.class_names, protocol=self.data_config,
                                         view_average=self.view_average, info={**self.info, **(info or {})})
        finally:
            self.model.to(self.device)

    def push_to_hub(self, repo_id: str, directory: str | os.PathLike, info: dict | None = None,
                    private: bool | None = None, token: str | None = None) -> str:
        """save_pretrained into ``directory``, then upload it (``models.hub.push_to_hub``); the commit URL."""
        return push_to_hub(self.save_pretrained(directory, info), repo_id, private=private, token=token)

    # ------------------------------------------------------------------------------------------------

    def clip_views(self, path: str | os.PathLike) -> torch.Tensor:
        """uint8 (clips*crops, T, 3, S, S): the test views of one video (a file or a frame folder)."""
        return self.protocol.read_views(path)

    @torch.no_grad()
    def scores(self, views: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """(num_classes,) probabilities of one video from its uint8 views, averaged like the checkpoint's test;
        ``frames`` reorders every view's frames after normalisation (the diagnostic's orders)."""
        x = self.protocol.normalize(views.to(self.device))
        if frames is not None:
            x = x[:, frames.to(self.device)]
        logits = self.model(x).float()
        if self.view_average == "prob":
            return logits.softmax(-1).mean(0)
        return logits.mean(0).softmax(-1)

    def predict(self, paths: str | os.PathLike | Sequence[str | os.PathLike], topk: int = 5,
                progress: bool = False) -> Prediction | list[Prediction]:
        """Top-k classes of one video (a Prediction) or of several (a list); unreadable files raise."""
        single = isinstance(paths, (str, os.PathLike))
        out = []
        for p in tqdm([paths] if single else list(paths), desc="videos", disable=not progress):
            out.append(self._rank(str(p), self.scores(self.clip_views(p)), topk))
        return out[0] if single else out

    def _rank(self, path: str, probs: torch.Tensor, topk: int) -> Prediction:
        p, i = probs.topk(min(topk, len(probs)))
        return Prediction(path, [self.class_names[j] for j in i.tolist()], [round(v, 6) for v in p.tolist()],
                          i.tolist())


def collect_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(video files, inputs that do not exist); a folder is walked for video files (sorted)."""
    videos, missing = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            videos += find_videos(p).videos
        elif p.exists():
            videos.append(str(p))
        else:
            missing.append(str(p))
    return videos, missing


def format_table(preds: list[Prediction]) -> str:
    rows = [("video", "class", "prob")]
    for pr in preds:
        for rank, (c, p) in enumerate(zip(pr.classes, pr.probs)):
            rows.append((pr.path if rank == 0 else "", c, f"{p:.4f}"))
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c:>6}" for a, b, c in rows)


def predict(cfg: DictConfig) -> list[Prediction]:
    schema.validate(cfg, "predict")
    inputs = cfg.inputs
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, ListConfig)) or not inputs:
        raise ConfigError("inputs: give video files and/or folders, e.g. inputs=[a.mp4,videos/]")
    videos, missing = collect_inputs([str(i) for i in inputs])
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, cfg.get("device") or "cpu", cfg.get("views"))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if cfg.get("data") is not None:  # +data=NAME: warn what differs from the data of the checkpoint's run
        ckpt = Checkpoint.read(cfg.ckpt_path)
        fingerprints.check_against_checkpoint(ckpt.raw, build.instantiate_data(cfg).fingerprint("test"), "test",
                                              out.parent, ckpt.where)
    diagnostic = instantiate(cfg.diagnose) if cfg.get("diagnose") else None
    orders = diagnostic.indices(int(predictor.protocol.num_frames)) if diagnostic else {}
    preds, failed = [], [(m, "no such file or folder") for m in missing]
    for path in tqdm(videos, desc="videos", disable=not cfg.get("progress", True)):
        try:
            views = predictor.clip_views(path)
            probs = {order: predictor.scores(views, idx) for order, idx in orders.items()}  # +diagnose=time
            pred = predictor._rank(path, probs["ordered"] if probs else predictor.scores(views), int(cfg.topk))
            pred.time = video_orders(probs, predictor.class_names) if probs else None
            preds.append(pred)
        except (VideoDecodeError, OSError, IndexError) as e:  # one bad file does not stop the others
            failed.append((path, f"{type(e).__name__}: {e}"))
    with open(out, "w") as f:
        for pr in preds:
            f.write(json.dumps({k: v for k, v in asdict(pr).items() if v is not None}) + "\n")
    if preds:
        print(format_table(preds))
        if diagnostic:
            print(time_table([(pr.path, pr.time) for pr in preds]))
    if failed:
        print(f"{len(failed)} input(s) could not be read:", file=sys.stderr)
        for path, why in failed:
            print(f"  {path}: {why}", file=sys.stderr)
    print(f"{len(preds)} video(s) classified; predictions in {out}")
    if not preds:
        raise SystemExit(1)
    return preds


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="predict")
@handle_user_errors
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
