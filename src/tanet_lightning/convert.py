"""Import a released TANet: ``python -m tanet_lightning.convert SRC --out DST.ckpt [--source auto|official|mmaction2]
[--num-frames T] [--classes FILE] [--data kinetics400|sthv1|sthv2]``.

Writes a project checkpoint (what training saves: ``hyper_parameters`` + ``state_dict`` of the
LightningModule) that ``eval``, ``predict``, ``visualize``, ``export`` and ``model.init_from`` take. It
also carries the class names and the test protocol of the checkpoint's dataset (``--data``; by default
Kinetics-400 for 400 classes, Something-Something V2 for 174), which ``predict`` uses.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from . import config
from .base.errors import CheckpointError, ConfigError, handle_user_errors
from .config import schema
from .data.protocol import TestProtocol
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .models.convert import Converted, convert
from .models.video import temporal_options
from .training.module import VideoClassificationModule

log = logging.getLogger("tanet_lightning")

DEFAULT_DATA = {400: "kinetics400", 174: "sthv2"}
# MMAction2's TANet configs normalise in 0-255 units with these (sic: 103.5); the official code uses ImageNet's
MM_MEAN, MM_STD = (123.675 / 255, 116.28 / 255, 103.5 / 255), (58.395 / 255, 57.12 / 255, 57.375 / 255)


def data_config(name: str, num_frames: int, source: str, **settings) -> dict:
    """The test protocol of conf/data/<name>.yaml, as training saves it (``VideoDataModule.test_protocol``);
    ``settings``: clip settings that replace the file's (``test_views``, ``test_crop_size``, ...)."""
    path = Path(config.config_dir()) / "data" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"--data {name}: no conf/data/{name}.yaml; choose one of {known}")
    mmaction2 = source == "mmaction2"
    protocol = TestProtocol.from_data_config(OmegaConf.load(path), num_frames=num_frames,
                                             mean=MM_MEAN if mmaction2 else IMAGENET_MEAN,
                                             std=MM_STD if mmaction2 else IMAGENET_STD, **settings)
    return {**protocol.to_dict(), "dataset": name}


def write_project_checkpoint(conv: Converted, out: Path, class_names: list[str], data: dict, view_average: str,
                             origin: str) -> Path:
    """What training saves, for the network read off the weights: flat hyper-parameters (the network's
    ``model.*`` keys and the module's), the LightningModule's state dict, class names and test protocol."""
    module = VideoClassificationModule(**conv.model_kwargs, view_average=view_average)
    module.net.load_state_dict(conv.state_dict, strict=True)
    hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in module.hparams.items()}
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": hparams,
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
        # `train ckpt_path=` resumes from here: no optimiser/scheduler state yet (they start fresh)
        "optimizer_states": [],
        "lr_schedulers": [],
        "class_names": list(class_names),
        "data_config": data,
        "converted_from": {"source": conv.source, "file": origin},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def read_classes(path: str | None, num_classes: int) -> list[str]:
    if path is None:
        return [str(i) for i in range(num_classes)]
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--classes {path}: no such file (one class name per line)")
    names = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    if len(names) != num_classes:
        raise CheckpointError(
            f"--classes {path} lists {len(names)} class names but the checkpoint's classifier has {num_classes} "
            f"outputs (Kinetics-400 has 400, Something-Something V1/V2 174): give the class file of its dataset"
        )
    return names


def run(args: argparse.Namespace) -> Path:
    conv = convert(args.src, args.source, num_frames=args.num_frames)
    print(f"{args.src}: {conv.source} checkpoint ({'detected' if args.source == 'auto' else 'as given'}); "
          f"{len(conv.state_dict)} tensors placed")
    mk = conv.model_kwargs
    n_cls = mk["num_classes"]
    names = read_classes(args.classes, n_cls)
    if conv.source == "project" and conv.class_names and args.classes is None:  # a folder may have none
        names = conv.class_names
    if conv.source == "project" and "data_config" in conv.extra and args.data is None:
        data = dict(conv.extra["data_config"])
    else:
        name = args.data or DEFAULT_DATA.get(n_cls)
        if name is None:
            raise ConfigError(f"the checkpoint has {n_cls} classes, not Kinetics-400's 400 or Sth-Sth's 174: "
                                  f"say which test protocol it needs with --data NAME (a conf/data config)")
        data = data_config(name, mk["num_frames"], conv.source)
    view_average = "prob" if conv.source == "mmaction2" else "logits"
    if conv.source == "project":
        view_average = (conv.extra.get("hyper_parameters") or {}).get("view_average", view_average)
    out = write_project_checkpoint(conv, Path(args.out), names, data, view_average, str(args.src))
    name, options, _ = temporal_options(mk.get("temporal"), mk.get("tam"))
    print(f"model: {mk['backbone']} + {name} {options} at {mk['stages']}, T={mk['num_frames']}, "
          f"{n_cls} classes{'' if args.classes or conv.source == 'project' else ' (names: indices; --classes FILE)'}")
    print(f"test protocol: {data.get('dataset', 'saved')} ({data['sampler']}, {data['test_views']} views, "
          f"crop {data['crop_size']}); wrote {out}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tanet_lightning.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="official TAM (ckpt.best.pth.tar), MMAction2 (.pth) or project checkpoint")
    p.add_argument("--out", required=True, help="project checkpoint to write (.ckpt)")
    p.add_argument("--source", default="auto", choices=["auto", "official", "mmaction2", "project"])
    p.add_argument("--num-frames", type=int, default=None,
                   help="T the checkpoint was trained with (default: read off TAM's weights; checked when given)")
    p.add_argument("--classes", default=None, help="class names, one per line, in the checkpoint's class order")
    p.add_argument("--data", default=None,
                   help="test protocol (conf/data name); default kinetics400 for 400 classes, sthv2 for 174")
    return p.parse_args(argv)


@handle_user_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    schema.validate_args(args, "convert")
    run(args)


if __name__ == "__main__":
    main()
