"""Multi-view evaluation of a checkpoint: ``python -m tanet_lightning.eval ckpt_path=PATH [data.test_views=10x3]``.

The model (architecture and weights) comes from the checkpoint; the data config chooses the test
protocol. Writes ``metrics.json`` and ``scores.npz`` (video_idx, labels, view-averaged scores, and the
video paths when the dataset knows them) so runs can be ensembled with ``tanet_lightning.ensemble``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from . import config
from .training import runner
from .training.module import VideoClassificationModule

log = logging.getLogger("tanet_lightning")


def load_checkpoint_model(ckpt_path: str, num_frames: int, view_average: str | None) -> VideoClassificationModule:
    path = Path(ckpt_path)
    if not path.is_file():
        raise runner.ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint")
    hparams = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    trained_t = hparams.get("num_frames")
    if trained_t != num_frames:
        raise runner.ConfigError(
            f"the checkpoint was trained with num_frames={trained_t} but data.num_frames={num_frames}; "
            f"TAM weights depend on T, so evaluate with data.num_frames={trained_t}"
        )
    overrides = {"pretrained": False}  # the checkpoint holds every weight: no download
    if view_average is not None:
        overrides["view_average"] = view_average
    return VideoClassificationModule.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    out = runner.output_dir(cfg)
    runner.seed(cfg)
    model = load_checkpoint_model(cfg.ckpt_path, cfg.data.num_frames, cfg.get("view_average"))
    datamodule = runner.instantiate_data(cfg)
    loggers = runner.instantiate_dict(cfg.get("logger"), "logger")
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    resolved = runner.save_resolved_config(cfg, out)
    runner.log_config(loggers, resolved, model)
    model.scores_path = out / "scores.npz"
    trainer.test(model, datamodule=datamodule)
    metrics = runner.to_python(trainer.callback_metrics)
    if trainer.is_global_zero:
        runner.write_metrics(out, metrics)
    log.info("metrics and scores.npz in %s", out)
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    finally:
        runner.finish_wandb()


if __name__ == "__main__":
    main()
