"""Hydra callbacks for sweeps (``hydra.callbacks`` in conf/hydra/default.yaml).

A sweep launches many jobs from one config. What every job would fail on in the same way (a dataset
that is not on this machine) is checked once, before the first job, so the sweep stops in seconds
with one clear message instead of failing every point one by one. A job that fails is recorded
(``FAILED`` in its directory) and the sweep goes on; when the last job has ended, the sweep writes its
comparison (report.md/.csv/.png, and with ``logger=wandb`` the W&B report: published when online, else
``wandb_report.json``), failed and unfinished jobs included, and then a sweep with failed jobs exits
non-zero, naming them.

Multirun + DDP (``trainer.strategy=ddp``): Lightning's launcher re-executes this command, ``-m``
included, for ranks > 0, so every rank runs the same sweep and job k of each rank pairs with job k of
the others. The re-executed sweep must use the launching sweep's directory (``${now:}`` would give it
another one, full of half jobs): the launching sweep pins its directory in ``TANET_SWEEP_DIR``, which
the rank processes inherit and ``hydra.sweep.dir`` (conf/hydra/default.yaml) reads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from . import runner

log = logging.getLogger("tanet_lightning")


SWEEP_DIR_ENV = "TANET_SWEEP_DIR"


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # a DDP rank's re-execution has LOCAL_RANK (set by Lightning's launcher) and the pinned directory
        self.launching = SWEEP_DIR_ENV not in os.environ or "LOCAL_RANK" not in os.environ
        if not self.launching:
            return  # the launching process checked the data
        os.environ[SWEEP_DIR_ENV] = str(config.hydra.sweep.dir)  # ${now:} resolved once, for every rank
        # One W&B group per launch: the group's `${now:...}` is resolved here, in the launch config, whose
        # resolver cache Hydra copies into every job's config; left to the jobs, each would read its own
        # start time and the sweep would scatter over as many groups as jobs.
        OmegaConf.select(config, "logger.wandb.group", throw_on_resolution_failure=False)
        try:
            # also generates the synthetic data once, before jobs (or SLURM tasks) could race for it
            runner.instantiate_data(config).prepare_data()
        except runner.ConfigError as e:
            log.error("%s\nThe sweep was not started: every job would fail the same way.", e)
            raise SystemExit(2) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not getattr(self, "launching", True):
            return  # a DDP rank's copy of the sweep: the launching process reports
        os.environ.pop(SWEEP_DIR_ENV, None)  # a later sweep from this process gets its own directory
        # a DDP rank's copy of the sweep re-saved multirun.yaml with its own launch overrides: restore
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        write_reports(sweep_dir)
        failed = sorted(p.parent.name for p in sweep_dir.glob("*/FAILED"))
        if failed:  # every job ran; a sweep with failed jobs did not finish: say so in the exit code
            log.error("%d job(s) of %s failed (reason in each FAILED file): %s", len(failed), sweep_dir,
                      ", ".join(failed))
            raise SystemExit(1)


def write_reports(sweep_dir: Path) -> None:
    """The sweep's comparison, written whatever the jobs' outcome; a failure here is logged, not raised,
    so that it cannot hide the sweep's own exit status."""
    from ..analysis import wandb_report
    from ..analysis.report import report

    again = f"python -m tanet_lightning.report {sweep_dir}"
    try:
        log.info("sweep report: %s", report(sweep_dir))
    except Exception:
        log.exception("the sweep report could not be written; once fixed: %s", again)
        return
    if not (sweep_dir / wandb_report.FILE).is_file():
        return
    spec = wandb_report.load(sweep_dir)
    if not wandb_report.ran_online(spec):
        sync = f"wandb sync {sweep_dir}/*/wandb/offline-run-*, then " if spec["offline_runs"] else ""
        log.info("W&B report defined in %s (the runs did not go to W&B as they ran); to publish: %s`%s --wandb`",
                 sweep_dir / wandb_report.FILE, sync, again)
        return
    try:
        report_url, view_url = wandb_report.publish(spec)
        log.info("W&B report: %s\nW&B workspace view: %s", report_url, view_url)
    except wandb_report.PublishError as e:
        log.warning("%s\nThe definition is in %s; publish it with `%s --wandb`", e,
                    sweep_dir / wandb_report.FILE, again)
