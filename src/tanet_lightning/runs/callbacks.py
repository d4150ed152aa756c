"""Run-lifecycle pieces the Trainer gets from conf/: the latest-state checkpoint, a CSV logger whose
history survives resumes, and the running epoch's metrics in a mid-epoch checkpoint.

Lightning's ModelCheckpoint rewrites ``last.ckpt`` only when it also saves a monitored checkpoint (an
improvement), so with a monitor it can lag epochs behind; and its CSV logger deletes an existing
``metrics.csv`` when a run is resumed into its own directory. Both would make a resume silently wrong.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections import deque
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics import Metric

LAST = "last.ckpt"
log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """``dirpath/last.ckpt`` = the state after the latest finished epoch (validation included), written
    every epoch and atomically: a process killed while writing leaves the previous one intact.

    A ``Checkpoint`` subclass so that Lightning runs it with the checkpoint callbacks, after every other
    callback and after the ModelCheckpoint listed before it: the saved state then holds the epoch's
    best-so-far, and a resume picks the same best checkpoint as an uninterrupted run.
    """

    def __init__(self, dirpath: str | os.PathLike):
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after the epoch's validation and after ModelCheckpoint updated its best-so-far state
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        tmp = self.dirpath / f".{LAST}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.dirpath / LAST)
        trainer.strategy.barrier("last_checkpoint")


class _KeepingWriter(ExperimentWriter):
    """Appends to an existing metrics.csv instead of deleting it (Lightning's writer deletes it)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])

    def _record_new_keys(self) -> set[str]:
        # under ddp_spawn, fit and test write from different processes with pickled copies of this
        # writer made before fit: the columns already in the file come from the file, not from memory
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys.extend(k for k in header if k not in self.metrics_keys)
        return super()._record_new_keys()

    def drop_rows_from(self, step: int) -> int:
        """Remove rows logged at ``step`` or later (the part of an epoch a resume will run again)."""
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
        with open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        return len(rows) - len(kept)


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, but every resume keeps the history written before it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment

    def resume_at(self, global_step: int) -> None:
        """Called before a resume from a checkpoint saved at ``global_step``: rows logged after that
        checkpoint belong to the interrupted epoch, which runs again, so they go."""
        self.experiment.drop_rows_from(global_step)


class EpochMetricsState(L.Callback):
    """The training epoch's running metrics (the sums behind ``train/loss_epoch``, ``train/top1``...) in a
    checkpoint saved mid-epoch (SLURM's requeue signal saves one). Lightning leaves them out, so a run resumed
    mid-epoch would report that epoch's means over the replayed part only.

    Saved only while an epoch's training batches run (not in ``last.ckpt``, written at the epoch's end), and
    only this process's part: exact on one device; under DDP the other ranks' part of the interrupted epoch
    is missing from its means. A signal during the epoch's validation is not covered either.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._in_epoch = False
        self._restored: dict | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_epoch = True
        saved = (self._restored or {}).get("metrics", {})
        for name, metric in _metrics(pl_module):  # before the first update of the resumed epoch
            if name in saved:
                for key, value in saved[name]["state"].items():
                    setattr(metric, key, value.to(getattr(metric, key).device))
                metric._update_count = saved[name]["updates"]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not self._restored:
            return
        results = trainer.fit_loop.epoch_loop._results  # created by the first logging call of the epoch
        for key, (value, size) in self._restored.get("results", {}).items():
            if key in results:
                results[key].value = results[key].value + value.to(results[key].value.device)
                if size is not None:
                    results[key].cumulated_batch_size = results[key].cumulated_batch_size + size
        self._restored = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_epoch = False  # runs before the checkpoint callbacks: last.ckpt holds no partial sums

    def state_dict(self) -> dict:
        if self._trainer is None or not self._in_epoch:
            return {}
        results = {key: (r.value.detach().cpu(), r.cumulated_batch_size.detach().cpu()
                         if r.meta.is_mean_reduction else None)
                   for key, r in self._trainer.fit_loop.epoch_loop._results.items()
                   if r.is_tensor and r.meta.on_epoch}
        metrics = {name: {"state": {k: v.detach().cpu() for k, v in m.metric_state.items()},
                          "updates": m._update_count}
                   for name, m in _metrics(self._trainer.lightning_module) if m._update_count}
        return {"results": results, "metrics": metrics}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = state_dict or None


def _metrics(module: L.LightningModule) -> list[tuple[str, Metric]]:
    """The module's torchmetrics whose state is tensors (sum/max/min reductions: the ones that can be saved)."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, Metric) and name
            and all(isinstance(v, torch.Tensor) for v in m.metric_state.values())]


class DataWaitMonitor(L.Callback):
    """Is the run data-bound? Logs the fraction of training time spent waiting for the next batch
    (``perf/data_wait_frac``) and the clips per second the loop gets (``perf/clips_per_s``), over the last
    ``window`` steps, and says once when more than ``warn_fraction`` of the time went to waiting.

    The wait is the time from the end of one step (``on_train_batch_end``) to the start of the next: the
    DataLoader's ``next()`` (Lightning fetches one batch ahead, so it is the wait for the batch after), the
    host-to-device copy and the other callbacks' batch-end hooks. The first ``warmup_steps`` steps of a run
    and the first step of every epoch (worker start-up, after validation) are left out.
    """

    def __init__(self, warn_fraction: float = 0.2, warmup_steps: int = 20, window: int = 50):
        self.warn_fraction, self.warmup_steps, self.window = warn_fraction, warmup_steps, window
        self._steps: deque[tuple[float, float, int]] = deque(maxlen=window)  # (wait, step, clips)
        self._seen, self._warned = 0, False
        self._last_end: float | None = None
        self._start: float | None = None
        self._wait = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()
        self._wait = self._start - self._last_end if self._last_end is not None else -1.0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        end = time.perf_counter()
        counted = self._wait >= 0 and self._start is not None
        self._last_end, self._seen = end, self._seen + 1
        if not counted or self._seen <= self.warmup_steps:
            return
        self._steps.append((self._wait, end - self._start, _batch_size(batch)))
        wait, total = sum(w for w, _, _ in self._steps), sum(w + s for w, s, _ in self._steps)
        frac, rate = wait / total, sum(n for _, _, n in self._steps) / total
        pl_module.log("perf/data_wait_frac", frac, on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("perf/clips_per_s", rate, on_step=True, on_epoch=False, batch_size=1)
        if not self._warned and len(self._steps) >= min(self.window, 10) and frac > self.warn_fraction:
            self._warned = True
            self._warn(trainer, frac, rate)

    @rank_zero_only
    def _warn(self, trainer: L.Trainer, frac: float, rate: float) -> None:
        dm = trainer.datamodule
        workers = getattr(dm, "num_workers", getattr(trainer.train_dataloader, "num_workers", None))
        command = dm.prepare_command() if hasattr(dm, "prepare_command") else "python -m tanet_lightning.prepare ..."
        log.warning(
            "the run is data-bound: %.0f %% of the last %d steps' time went to waiting for the next batch "
            "(%.1f clips/s per process). More DataLoader workers help while there are idle cores "
            "(data.num_workers=%s; this machine has %d cores), and a copy of the videos with a keyframe every "
            "30 frames decodes 2-3x faster per clip: %s",
            100 * frac, len(self._steps), rate, workers if workers is not None else "?", len(os.sched_getaffinity(0)),
            command)


def _batch_size(batch) -> int:
    video = batch.get("video") if isinstance(batch, dict) else batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(video.shape[0]) if hasattr(video, "shape") else 1
