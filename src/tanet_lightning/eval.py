"""Multi-view evaluation of a checkpoint: ``python -m tanet_lightning.eval ckpt_path=PATH [data.test_views=10x3]``.

The model (architecture and weights) comes from the checkpoint; the data config chooses the test
protocol. Writes ``metrics.json`` and ``scores.npz`` (video_idx, labels, view-averaged scores, and the
video paths when the dataset knows them) so runs can be ensembled with ``tanet_lightning.ensemble``.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from . import config
from .training import run_files, runner
from .training.loggers import finish_wandb, log_config
from .training.module import VideoClassificationModule

log = logging.getLogger("tanet_lightning")


def load_checkpoint_model(ckpt_path: str, num_frames: int, num_classes: int,
                          view_average: str | None) -> VideoClassificationModule:
    ckpt = runner.read_checkpoint(ckpt_path)
    hparams = ckpt["hyper_parameters"]
    if hparams.get("num_frames") != num_frames:
        raise runner.ConfigError(
            f"the checkpoint was trained with num_frames={hparams.get('num_frames')} but data.num_frames="
            f"{num_frames}; TAM weights depend on T, so evaluate with data.num_frames={hparams.get('num_frames')}"
        )
    if hparams.get("num_classes") != num_classes:
        raise runner.ConfigError(
            f"the checkpoint has {hparams.get('num_classes')} classes but the data config gives {num_classes}: "
            "evaluate it on the dataset it was trained on (set data=...)")
    overrides = {"pretrained": False}  # the checkpoint holds every weight: no download
    if view_average is not None:
        overrides["view_average"] = view_average
    return VideoClassificationModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True,
                                                          **overrides)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    out = run_files.output_dir(cfg)
    runner.seed(cfg)
    datamodule = runner.instantiate_data(cfg)
    model = load_checkpoint_model(cfg.ckpt_path, cfg.data.num_frames, datamodule.num_classes,
                                  cfg.get("view_average"))
    loggers = runner.instantiate_dict(cfg.get("logger"), "logger")
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    resolved = run_files.save_resolved_config(cfg, out)
    log_config(loggers, resolved, model)
    model.scores_path = out / "scores.npz"
    datamodule.bad_log_base = out / "bad_files"
    trainer.test(model, datamodule=datamodule)
    run_files.write_bad_files(out, datamodule.bad_file_rows())
    metrics = run_files.to_python(trainer.callback_metrics)
    if trainer.is_global_zero:
        run_files.write_metrics(out, metrics)
    log.info("metrics and scores.npz in %s", out)
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except runner.ConfigError as e:  # the message says what to change; no traceback needed
        log.error("%s", e)
        raise SystemExit(2) from None
    finally:
        finish_wandb()


if __name__ == "__main__":
    main()
