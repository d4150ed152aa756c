"""Hydra callbacks for sweeps (``hydra.callbacks`` in conf/hydra/default.yaml).

A sweep launches many jobs from one config. What every job would fail on in the same way (a dataset
that is not on this machine) is checked once, before the first job, so the sweep stops in seconds
with one clear message instead of failing every point one by one. A job that fails is recorded
(state ``failed`` in its ``run.json``, runs/lifecycle.py) and the sweep goes on; when the last job has
ended, the sweep writes its comparison (report.md/.csv/.png, and with ``logger=wandb`` the W&B report:
published when online, else ``wandb_report.json``), failed and unfinished jobs included, and then a sweep
with failed or refused jobs exits non-zero, naming them.

One sweep directory, one launch at a time: a second launch into it (``hydra.sweep.dir=`` of a running
sweep) is refused (``.sweep.lock``). A stopped sweep (SIGTERM, Ctrl-C, a failed job) is finished by the
same command + ``hydra.sweep.dir=<its directory> ckpt_path=last``: finished jobs are kept, interrupted
ones resume, the others start (``finish_command`` prints it).

Multirun + DDP (``trainer.strategy=ddp``): Lightning's launcher re-executes this command, ``-m``
included, for ranks > 0, so every rank runs the same sweep and job k of each rank pairs with job k of
the others. The re-executed sweep must use the launching sweep's directory (``${now:}`` would give it
another one, full of half jobs): the launching sweep pins its directory in ``TANET_SWEEP_DIR``, which
the rank processes inherit and ``hydra.sweep.dir`` (conf/hydra/default.yaml) reads.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .analysis import wandb_report
from .analysis.report import report
from .base import locks
from .base.errors import ConfigError
from .config import schema
from .runs import build
from .runs.lifecycle import STATE, RunState
from .runs.signals import Stopped

log = logging.getLogger("tanet_lightning")


SWEEP_DIR_ENV = "TANET_SWEEP_DIR"


class SweepCallback(Callback):
    refused: ClassVar[list[str]] = []  # jobs of this launch whose directory was refused (see train.main)

    def __getstate__(self) -> dict:
        # submitit pickles the launcher's callbacks into every job; the sweep lock stays with the launching
        # process (a lock cannot be pickled, and a job holding a copy would not be holding it)
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # a DDP rank's re-execution has LOCAL_RANK (set by Lightning's launcher) and the pinned directory
        self.launching = SWEEP_DIR_ENV not in os.environ or "LOCAL_RANK" not in os.environ
        if not self.launching:
            return  # the launching process checked the data
        if problems := sweep_problems(config):  # before the sweep directory exists
            log.error("%s", "\n".join(problems))
            raise SystemExit(2)
        SweepCallback.refused.clear()
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.lock = locks.hold(sweep_dir / ".sweep.lock")  # held until this process ends
        except locks.Held as held:
            log.error("another launch (%s) is running the sweep in %s: wait for it to end, or give this one "
                      "another hydra.sweep.dir", held.holder, sweep_dir)
            raise SystemExit(2) from None
        self.lock.claim(f"pid {os.getpid()}")

        def stop_between_jobs(signum, frame):  # inside a job the run's own handler is in place (signals.py)
            write_reports(sweep_dir)
            log.error("the sweep was stopped; finish it with: %s", self.finish_command(sweep_dir))
            raise Stopped(signum)

        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, stop_between_jobs)
        os.environ[SWEEP_DIR_ENV] = str(config.hydra.sweep.dir)  # ${now:} resolved once, for every rank
        # One W&B group per launch: the group's `${now:...}` is resolved here, in the launch config, whose
        # resolver cache Hydra copies into every job's config; left to the jobs, each would read its own
        # start time and the sweep would scatter over as many groups as jobs.
        OmegaConf.select(config, "logger.wandb.group", throw_on_resolution_failure=False)
        try:
            # also generates the synthetic data once, before jobs (or SLURM tasks) could race for it
            build.instantiate_data(config).prepare_data()
        except ConfigError as e:
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
        failed = sorted(p.parent.name for p in sweep_dir.glob(f"*/{STATE}")
                        if json.loads(p.read_text()).get("state") == RunState.FAILED)
        refused, SweepCallback.refused[:] = list(SweepCallback.refused), []
        if failed or refused:  # every job ran; a sweep with failed jobs did not finish: say so in the exit code
            if failed:
                log.error("%d job(s) of %s failed (the reason in each run.json): %s", len(failed), sweep_dir,
                          ", ".join(failed))
            for line in refused:
                log.error("refused: %s", line)
            log.error("once fixed, finish the sweep with: %s", self.finish_command(sweep_dir))
            raise SystemExit(1)

    @staticmethod
    def finish_command(sweep_dir: Path) -> str:
        """The launch command again, into the same directory, resuming: what finishes a stopped sweep."""
        try:
            task = list(OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task)
        except (OSError, ValueError):
            task = sys.argv[1:]
        task = [o for o in task if not o.startswith(("ckpt_path=", "hydra.sweep.dir=", "-m", "--multirun"))]
        return shlex.join(["python", "-m", "tanet_lightning.train", "-m", *task, f"hydra.sweep.dir={sweep_dir}",
                           "ckpt_path=last"])


def sweep_problems(config: DictConfig) -> list[str]:
    """What the sweep's own settings get wrong (each job checks its config itself): a search of no trials
    (Optuna's sweeper would fail at its end with "Record does not exist"), an override that cannot resolve."""
    problems = schema.override_problems(config)
    for key in ("n_trials", "n_jobs"):
        value = OmegaConf.select(config, f"hydra.sweeper.{key}", default=None, throw_on_resolution_failure=False)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"hydra.sweeper.{key}={value!r} must be an integer >= 1: give hydra.sweeper.{key}=N")
    return problems


def write_reports(sweep_dir: Path) -> None:
    """The sweep's comparison, written whatever the jobs' outcome; a failure here is logged, not raised,
    so that it cannot hide the sweep's own exit status."""
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
