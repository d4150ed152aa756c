"""Train and test: ``python -m tanet_lightning.train [+experiment=NAME] [key=value ...]``.

With no arguments: TANet on the embedded synthetic motion videos, on the CPU, in a few minutes.
``train(cfg)`` is the testable entry point; ``main`` only adds Hydra. What re-running a command does
(start, resume, refuse) is the run directory's lifecycle: runs/lifecycle.py.
"""

from __future__ import annotations

import logging
import signal
import traceback
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from . import config
from .base.errors import ConfigError, DataError, RunStateError, UserError, handle_user_errors
from .config import checks, schema
from .models.fit import check_fits
from .models.load import Checkpoint
from .runs import build, fingerprints, lifecycle, loggers, outputs, signals
from .runs.callbacks import LAST
from .sweep import SweepCallback, write_reports
from .training.module import instantiate_model

log = logging.getLogger("tanet_lightning")


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit, then test the best checkpoint (``train=false``: test ``ckpt_path``). Returns (metrics, objects).
    A run that had finished already (``ckpt_path=last``) returns its metrics and no objects."""
    schema.validate(cfg, "train")
    checks.check_config(cfg)
    checks.check_slurm_layout(cfg.trainer)
    ckpt_path = cfg.get("ckpt_path")
    if not cfg.get("train", True) and cfg.get("test", True) and ckpt_path in (None, "last"):
        raise ConfigError("train=false tests a checkpoint: give ckpt_path=PATH "
                          "(or use python -m tanet_lightning.eval ckpt_path=PATH)")
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint")
    try:
        with signals.stop_on_signals(requeue=True), lifecycle.open_run(cfg, lifecycle.hydra_files(cfg)) as run:
            if run.done:
                return run.metrics, {"cfg": cfg}
            try:
                return _train(cfg, run)
            except BaseException as e:  # a signal that surfaced as another library's error is still a stop, and
                # so is Lightning's SIGTERMException (a SystemExit of status 0); a full disk is named as such
                stop = signals.stop_behind(e) or checks.disk_full_behind(e, run.out)
                if stop is None or stop is e:
                    raise
                raise stop from None
    except signals.Stopped as e:
        out = Path(cfg.paths.output_dir)
        if lifecycle.resume_checkpoint(out):
            log.error("stopped by %s: %s/checkpoints/%s holds the last finished epoch; resume with the same "
                      "command + ckpt_path=last", e.name, out, LAST)
        else:
            log.error("stopped by %s before the first epoch ended (nothing saved): the same command + "
                      "ckpt_path=last starts it again", e.name)
        raise


def _train(cfg: DictConfig, run: lifecycle.Run) -> tuple[dict[str, float], dict[str, Any]]:
    out = run.out
    fit, test = cfg.get("train", True), cfg.get("test", True)
    ckpt_path = run.resume_from or (cfg.ckpt_path if cfg.get("ckpt_path") not in (None, "last") else None)
    build.seed(cfg)

    datamodule = build.instantiate_data(cfg)
    datamodule.bad_log_base = out / "bad_files"  # per split while running; bad_files.tsv at the end
    checks.check_pretrained(cfg.model)
    model = instantiate_model(cfg.model, num_classes=datamodule.num_classes,
                              optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler))
    callbacks = [*build.instantiate_dict(cfg.get("callbacks"), "callbacks"), *build.instantiate_diagnostics(cfg)]
    experiment_loggers = build.instantiate_dict(cfg.get("logger"), "logger")
    callbacks.append(signals.StopAtSafePoints(out))  # a stop signal waits for the end of a batch
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=experiment_loggers or False)
    if ckpt_path is not None:
        ckpt = Checkpoint.read(ckpt_path)  # a clear error for a file that is not one of ours
        check_fits(ckpt, num_frames=model.net.num_frames, class_names=datamodule.class_names, use="resume",
                   protocol=datamodule.test_protocol().to_dict())
        if fit:  # the interrupted epoch runs again: its rows go from the history
            for lg in experiment_loggers:
                if hasattr(lg, "resume_at"):
                    lg.resume_at(int(ckpt.raw.get("global_step", 0)))
    datamodule.check_annotations()  # every split's list read and validated before the first step
    fingerprints.write(out, datamodule.fingerprints())  # which videos (unreadable ones: at the end)
    resolved = outputs.save_resolved_config(cfg, out)
    loggers.log_config(experiment_loggers, resolved, model)

    metrics: dict[str, float] = dict(run.record.get("fit_metrics") or {})  # a resume that only tests keeps them
    try:
        if fit:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            # ddp_spawn trains in child processes: only their logged metrics come back, not global_step
            if trainer.global_step == 0 and not any(k.startswith("train/") for k in trainer.callback_metrics):
                raise DataError(_no_steps(cfg, trainer, datamodule))
            metrics.update(outputs.to_python(trainer.callback_metrics))
            run.fit_ended(metrics)
        if test:
            tested = _best_checkpoint(trainer) if fit else ckpt_path
            trainer.test(model, datamodule=datamodule, ckpt_path=tested, weights_only=True)
            metrics.update(outputs.to_python(trainer.callback_metrics))
    finally:
        outputs.write_bad_files(out, datamodule.bad_file_rows())
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    metrics.update(build.model_complexity(model.net, datamodule))
    metrics["data/bad_files"] = float(len(datamodule.bad_files()))
    if metrics["data/bad_files"]:
        metrics["data/bad_files_list"] = "bad_files.tsv"  # split, path, reason of each
    read = [*(("train", "val") if fit else ()), *(("test",) if test else ())]
    metrics["data_fingerprint"] = fingerprints.write(out, datamodule.fingerprints(read=read))
    run.finish(metrics)
    if trainer.is_global_zero:
        loggers.log_summary(experiment_loggers, {k: metrics[k] for k in ("model/gflops", "model/params")})
    log.info("run directory: %s", out)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def _no_steps(cfg: DictConfig, trainer, datamodule) -> str:
    videos = len(datamodule.datasets["train"]) if "train" in datamodule.datasets else "?"
    per_step = cfg.data.batch_size * trainer.world_size
    return (f"the run trained 0 steps: {videos} training videos, but each step takes data.batch_size="
            f"{cfg.data.batch_size} x {trainer.world_size} device(s) = {per_step} (an incomplete last batch is "
            "dropped): lower data.batch_size or trainer.devices (or raise trainer.limit_train_batches); "
            "nothing was tested")


def _best_checkpoint(trainer) -> str | None:
    """The monitored best checkpoint that exists. A resume restores the best path of an older state, which
    may be gone (a later best replaced it, or it was deleted to save disk): then the best remaining
    ``epoch_*`` checkpoint by its saved score, else ``last.ckpt``; None: test the current weights."""
    cb = trainer.checkpoint_callback
    if cb is None or not cb.dirpath:
        log.warning("no checkpoint callback: testing the current weights")
        return None
    best = cb.best_model_path
    if best and Path(best).is_file():
        return best
    scored = {}
    for path in Path(cb.dirpath).glob("*.ckpt"):
        if path.name == LAST:
            continue
        states = torch.load(path, map_location="cpu", weights_only=True).get("callbacks", {})
        score = next((s["current_score"] for k, s in states.items()
                      if k.startswith("ModelCheckpoint") and s.get("current_score") is not None), None)
        if score is not None:
            scored[path] = float(score)
    if scored:
        chosen = (max if cb.mode == "max" else min)(scored, key=scored.get)
        log.warning("the best checkpoint %s is gone: testing the best remaining one, %s (%s=%.4f)",
                    best or "(none recorded)", chosen, cb.monitor, scored[chosen])
        return str(chosen)
    last = Path(cb.dirpath) / LAST
    if last.is_file():
        log.warning("no monitored checkpoint exists (%s): testing %s", best or "none recorded", last)
        return str(last)
    log.warning("no checkpoint saved (no validation?): testing the current weights")
    return None


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="train")
@handle_user_errors
def main(cfg: DictConfig) -> float | None:
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        try:
            metrics, _ = train(cfg)
        except KeyboardInterrupt:  # Ctrl-C before the run's own handler was in place
            raise signals.Stopped(signal.SIGINT) from None
        except Exception as e:  # stopped before the run had begun, inside another library's code
            if (stop := signals.stop_behind(e)) is None:
                raise
            raise stop from None
    except (signals.Stopped, signals.Requeued):
        if sweeping:  # the sweep stops here: report what ran, and every point that did not
            sweep_dir = Path(HydraConfig.get().sweep.dir)
            write_reports(sweep_dir)
            log.error("the sweep was stopped; finish it with: %s", SweepCallback.finish_command(sweep_dir))
        raise
    except Exception as e:
        if not sweeping:
            raise
        # a sweep goes on past a failing job (its run.json says failed, and why; the report shows it)
        # and past a refused one (a directory another process holds: nothing of it was touched)
        if isinstance(e, RunStateError):
            SweepCallback.refused.append(f"{Path(cfg.paths.output_dir).name}: {e}")
        detail = str(e) if isinstance(e, UserError) else traceback.format_exc()
        log.error("job %s %s:\n%s", cfg.paths.output_dir,
                  "refused" if isinstance(e, RunStateError) else "failed", detail)
        return None
    finally:
        loggers.finish_wandb()
    return metrics.get(cfg.get("optimized_metric", "val/top1_best"))  # for sweepers that optimise a value


if __name__ == "__main__":
    main()
