"""Hydra callbacks for sweeps (``hydra.callbacks`` in conf/hydra/default.yaml).

A sweep launches many jobs from one config. What every job would fail on in the same way (a dataset
that is not on this machine) is checked once, before the first job, so the sweep stops in seconds
with one clear message instead of failing every point one by one. A job that fails is recorded
(``FAILED`` in its directory) and the sweep goes on; when the last job has ended, a sweep with failed
jobs exits non-zero, naming them.

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
        failed = sorted(p.parent.name for p in sweep_dir.glob("*/FAILED"))
        if failed:  # every job ran; a sweep with failed jobs did not finish: say so in the exit code
            log.error("%d job(s) of %s failed (reason in each FAILED file): %s", len(failed), sweep_dir,
                      ", ".join(failed))
            raise SystemExit(1)
