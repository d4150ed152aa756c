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
from omegaconf import DictConfig

from . import config
from .training import runner

log = logging.getLogger("tanet_lightning")


def resolve_ckpt_path(ckpt_path: str | None, out: Path) -> str | None:
    if ckpt_path != "last":
        if ckpt_path is not None and not Path(ckpt_path).is_file():
            raise runner.ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint")
        return ckpt_path
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise runner.ConfigError(f"ckpt_path=last but {last} does not exist: nothing to resume in this run directory")
    return str(last)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit, then test the best checkpoint. Returns (metrics, objects)."""
    runner.check_config(cfg)
    out = runner.output_dir(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out)
    runner.seed(cfg)

    datamodule = runner.instantiate_data(cfg)
    model = instantiate(cfg.model, num_classes=datamodule.num_classes,
                        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler))
    callbacks = runner.instantiate_dict(cfg.get("callbacks"), "callbacks")
    loggers = runner.instantiate_dict(cfg.get("logger"), "logger")
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resolved = runner.save_resolved_config(cfg, out)
    runner.log_config(loggers, resolved, model)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(runner.to_python(trainer.callback_metrics))
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best and cfg.get("train", True):
            log.warning("no best checkpoint (no validation?): testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(runner.to_python(trainer.callback_metrics))
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    metrics.update(runner.model_complexity(model.net, datamodule))
    bad = datamodule.bad_files() if hasattr(datamodule, "bad_files") else []
    metrics["data/bad_files"] = float(len(bad))
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
