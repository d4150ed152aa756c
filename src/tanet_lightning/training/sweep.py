"""Hydra callbacks for sweeps (``hydra.callbacks`` in conf/hydra/default.yaml).

A sweep launches many jobs from one config. What every job would fail on in the same way (a dataset
that is not on this machine) is checked once, before the first job, so the sweep stops in seconds
with one clear message instead of failing every point one by one. A job that fails is recorded
(``FAILED`` in its directory) and the sweep goes on; when the last job has ended, a sweep with failed
jobs exits non-zero, naming them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import runner

log = logging.getLogger("tanet_lightning")


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            # also generates the synthetic data once, before jobs (or SLURM tasks) could race for it
            runner.instantiate_data(config).prepare_data()
        except runner.ConfigError as e:
            log.error("%s\nThe sweep was not started: every job would fail the same way.", e)
            raise SystemExit(2) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = sorted(p.parent.name for p in sweep_dir.glob("*/FAILED"))
        if failed:  # every job ran; a sweep with failed jobs did not finish: say so in the exit code
            log.error("%d job(s) of %s failed (reason in each FAILED file): %s", len(failed), sweep_dir,
                      ", ".join(failed))
            raise SystemExit(1)
