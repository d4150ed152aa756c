"""Multi-view evaluation of a checkpoint: ``python -m tanet_lightning.eval ckpt_path=PATH [data.test_views=10x3]``.

The model (architecture and weights) comes from the checkpoint (a file, or a save_pretrained folder:
``export format=hf``); the data config chooses the test protocol. The checkpoint must fit the data
(``models.fit.check_fits``: T, and the classes by name: the same names in another order are scored in
the data's order). Writes ``metrics.json`` and ``scores.npz``
(video_idx, labels, view-averaged scores, and the video paths when the dataset knows them) so runs can
be ensembled with ``tanet_lightning.ensemble``, and the test split's fingerprint (``fingerprint.json``, in
metrics.json too); what differs from the checkpoint's is a warning (runs/fingerprints.py).
``+diagnose=time`` also scores the test clips reversed, shuffled and frozen (``time/*`` in metrics.json:
training/diagnose.py).

An evaluation is a run (runs/lifecycle.py): its directory is named after the overrides and the
checkpoint (``<overrides>__ckpt-<file>-<path hash>__seed-N``), its ``run.json`` records the checkpoint's
path and content; a finished one is kept (refused; ``overwrite=true`` evaluates again), an unfinished
one runs again.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from . import config
from .base.errors import handle_user_errors
from .config import schema
from .models.load import Checkpoint
from .runs import build, fingerprints, lifecycle, outputs
from .runs.loggers import finish_wandb, log_config
from .training.module import VideoClassificationModule

log = logging.getLogger("tanet_lightning")


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    schema.validate(cfg, "eval")
    # what cannot work (not a checkpoint, a missing dataset, a checkpoint of other data) is refused before
    # the run directory is touched
    ckpt = Checkpoint.read(cfg.ckpt_path)
    build.seed(cfg)
    datamodule = build.instantiate_data(cfg)
    mechanics = {"view_average": cfg.view_average} if cfg.get("view_average") is not None else {}
    model = VideoClassificationModule.from_checkpoint(
        ckpt, num_frames=cfg.data.num_frames, class_names=datamodule.class_names,
        protocol=datamodule.test_protocol().to_dict(), **mechanics)
    with lifecycle.open_run(cfg, lifecycle.hydra_files(cfg)) as run:
        return _test(cfg, ckpt, datamodule, model, run)


def _test(cfg: DictConfig, ckpt: Checkpoint, datamodule, model: VideoClassificationModule,
          run: lifecycle.Run) -> tuple[dict[str, float], dict[str, Any]]:
    out = run.out
    loggers = build.instantiate_dict(cfg.get("logger"), "logger")
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build.instantiate_diagnostics(cfg))
    resolved = outputs.save_resolved_config(cfg, out)
    log_config(loggers, resolved, model)
    model.scores_path = out / "scores.npz"
    datamodule.bad_log_base = out / "bad_files"
    # split fingerprint: warn what differs from the test data of the checkpoint's run
    fingerprints.check_against_checkpoint(ckpt.raw, datamodule.fingerprint("test"), "test", out, ckpt.where)
    trainer.test(model, datamodule=datamodule)
    outputs.write_bad_files(out, datamodule.bad_file_rows())
    metrics = outputs.to_python(trainer.callback_metrics)
    metrics["data_fingerprint"] = fingerprints.write(out, datamodule.fingerprints(read=("test",)))
    run.finish(metrics)
    log.info("metrics and scores.npz in %s", out)
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="eval")
@handle_user_errors
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    finally:
        finish_wandb()


if __name__ == "__main__":
    main()
