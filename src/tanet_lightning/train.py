"""Train and test: ``python -m tanet_lightning.train [+experiment=NAME] [key=value ...]``.

With no arguments: TANet on the embedded synthetic motion videos, on the CPU, in a few minutes.
``train(cfg)`` is the testable entry point; ``main`` only adds Hydra.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from . import config
from .models.fit import check_fits
from .models.load import Checkpoint
from .training import runner, schema
from .training.callbacks import LAST
from .training.module import instantiate_model

log = logging.getLogger("tanet_lightning")


class RunInterrupted(SystemExit):
    """The run was stopped by SIGTERM (a scheduler's preemption or time limit): exit status 143 = 128 + 15,
    never 0. ``checkpoints/last.ckpt`` holds the last finished epoch; ``ckpt_path=last`` resumes from it."""

    def __init__(self, out: Path):
        super().__init__(143)
        self.out = out


def resolve_ckpt_path(ckpt_path: str | None, out: Path) -> str | None:
    if ckpt_path != "last":
        if ckpt_path is not None and not Path(ckpt_path).is_file():
            raise runner.ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint")
        return ckpt_path
    last = out / "checkpoints" / LAST
    if not last.is_file():
        raise runner.ConfigError(f"ckpt_path=last but {last} does not exist: nothing to resume in this run directory")
    return str(last)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit, then test the best checkpoint (``train=false``: test ``ckpt_path``). Returns (metrics, objects)."""
    schema.validate(cfg, "train")
    runner.check_config(cfg)
    out = runner.output_dir(cfg)
    with runner.run_lock(out), runner.stop_on_sigterm():
        try:
            return _train(cfg, out)
        except SIGTERMException:
            (out / "INTERRUPTED").write_text("stopped by SIGTERM; resume with ckpt_path=last\n")
            log.error("stopped by SIGTERM: %s/checkpoints/%s holds the last finished epoch (if any); resume "
                      "with the same command + ckpt_path=last", out, LAST)
            raise RunInterrupted(out) from None


def _train(cfg: DictConfig, out: Path) -> tuple[dict[str, float], dict[str, Any]]:
    fit, test = cfg.get("train", True), cfg.get("test", True)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out)
    if not fit and test and ckpt_path is None:
        raise runner.ConfigError("train=false tests a checkpoint: give ckpt_path=PATH "
                                 "(or use python -m tanet_lightning.eval ckpt_path=PATH)")
    runner.seed(cfg)

    datamodule = runner.instantiate_data(cfg)
    datamodule.bad_log_base = out / "bad_files"  # per split while running; bad_files.tsv at the end
    runner.check_pretrained(cfg.model)
    model = instantiate_model(cfg.model, num_classes=datamodule.num_classes,
                              optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler))
    callbacks = runner.instantiate_dict(cfg.get("callbacks"), "callbacks")
    loggers = runner.instantiate_dict(cfg.get("logger"), "logger")
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if ckpt_path is not None:
        ckpt = Checkpoint.read(ckpt_path)  # a clear error for a file that is not one of ours
        check_fits(ckpt, num_frames=model.net.num_frames, class_names=datamodule.class_names, use="resume",
                   protocol=datamodule.test_protocol().to_dict())
        if fit:  # the interrupted epoch runs again: its rows go from the history
            for lg in loggers:
                if hasattr(lg, "resume_at"):
                    lg.resume_at(int(ckpt.raw.get("global_step", 0)))
    datamodule.check_annotations()  # every split's list read and validated before the first step
    resolved = runner.save_resolved_config(cfg, out)
    runner.log_config(loggers, resolved, model)

    metrics: dict[str, float] = {}
    try:
        if fit:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            metrics.update(runner.to_python(trainer.callback_metrics))
        if test:
            best = trainer.checkpoint_callback.best_model_path if fit and trainer.checkpoint_callback else ""
            if fit and not best:
                log.warning("no best checkpoint (no validation?): testing the current weights")
            trainer.test(model, datamodule=datamodule, ckpt_path=(best or None) if fit else ckpt_path,
                         weights_only=True)
            metrics.update(runner.to_python(trainer.callback_metrics))
    finally:
        runner.write_bad_files(out, datamodule.bad_file_rows())
    (out / "INTERRUPTED").unlink(missing_ok=True)
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    metrics.update(runner.model_complexity(model.net, datamodule))
    metrics["data/bad_files"] = float(len(datamodule.bad_files()))
    if metrics["data/bad_files"]:
        metrics["data/bad_files_list"] = "bad_files.tsv"  # split, path, reason of each
    if trainer.is_global_zero:
        runner.write_metrics(out, metrics)
        runner.log_summary(loggers, {k: metrics[k] for k in ("model/gflops", "model/params")})
    log.info("run directory: %s", out)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    runner.output_dir(cfg).joinpath("FAILED").unlink(missing_ok=True)  # a re-run starts with a clean record
    try:
        metrics, _ = train(cfg)
    except RunInterrupted:
        if sweeping:  # the sweep stops here: report what ran, and every point that did not
            from .training.sweep import write_reports

            write_reports(Path(HydraConfig.get().sweep.dir))
        raise
    except Exception as e:
        if sweeping:  # a sweep goes on past a failing job; the report shows it as failed, with the reason
            out = runner.output_dir(cfg)
            (out / "FAILED").write_text(traceback.format_exc())
            log.error("job failed (recorded in %s/FAILED):\n%s", out, traceback.format_exc())
            return None
        if isinstance(e, runner.ConfigError):  # the message says what to change; no traceback needed
            log.error("%s", e)
            raise SystemExit(2) from None
        raise
    finally:
        runner.finish_wandb()
    return metrics.get("val/top1_best")  # for sweepers that optimise a value


if __name__ == "__main__":
    main()
