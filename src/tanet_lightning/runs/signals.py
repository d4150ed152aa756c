"""Signals that end a run early, turned into exceptions the run directory's lifecycle records.

SIGTERM (a scheduler's preemption or time limit), SIGINT (Ctrl-C) and, under SLURM, SIGUSR1 (the
time-limit warning: ``#SBATCH --signal=USR1@120``, hydra/launcher=slurm) only record a request while the
training loop runs: the run stops at the next safe point, the end of a training batch (or of the fit),
where every DDP rank agrees on it. A signal that raised at once could land inside a checkpoint write
(Lightning's, fsspec's), where the library's own error would replace ours and the run would be recorded
failed. Outside the training loop (data setup, testing) nothing is half-written by stopping, so the
signal stops at once; so does a second signal while the first waits for its safe point.

- SIGTERM / SIGINT raise ``Stopped``: the run is interrupted; ``last.ckpt`` holds its last finished epoch.
  Exit status 128 + the signal: 143, 130 (Python's default would end the process with nothing written,
  and Lightning turns a KeyboardInterrupt into exit status 1).
- SIGUSR1 under SLURM, at a safe point, saves ``hpc_ckpt_<n>.ckpt`` (the exact mid-epoch state) and raises
  ``Requeued`` (outside the loop it saves nothing: the newest checkpoint is still the state); the run is
  recorded requeued, then ``scontrol requeue`` puts the job back in the queue; exit 138, no test, no
  metrics.json. The requeued job runs the same command, which resumes. Lightning's own SLURM handler
  would save and requeue too, but then go on training and testing the unfinished run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("tanet_lightning")

REQUEUE_SIGNAL = signal.SIGUSR1  # SLURMEnvironment's requeue_signal, and --signal=USR1@... in conf/hydra/launcher
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(SystemExit):
    """Raised by SIGTERM or SIGINT inside a run; a SystemExit so that Hydra's sweep loop does not take it for
    a failed job and go on."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


class Requeued(SystemExit):
    """The SLURM job is being requeued: exit status 128 + SIGUSR1 = 138 (not 0: the run did not finish; SLURM
    puts the job back in the queue, whatever the status). ``checkpoint``: the state saved for it, or None
    when the signal came outside the training loop (the newest checkpoint already holds the state)."""

    def __init__(self, checkpoint: Path | None):
        super().__init__(128 + REQUEUE_SIGNAL)
        self.checkpoint = checkpoint
        self.reason = ("SLURM requeue signal: " + (f"state saved in {checkpoint.name}" if checkpoint else
                                                    "outside the training loop, nothing new to save"))


def stop_behind(exc: BaseException) -> Stopped | Requeued | None:
    """The stop that ``exc`` stands for or replaced, if any: a signal that lands inside a library's code (an
    OmegaConf ``finally`` block, a file being closed) can surface as that library's own error, with ours as
    its cause or context; Lightning's own SIGTERM stop is a ``SIGTERMException``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (Stopped, Requeued)):
            return exc
        if isinstance(exc, SIGTERMException):
            return Stopped(signal.SIGTERM)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class _Requests:
    """This process's stop requests (signal handlers are per process: one instance, module-level, so that the
    callback finds it also after a Trainer was pickled; spawned DDP children get a fresh, empty one)."""

    def __init__(self) -> None:
        self.pending: int | None = None  # the signal waiting for a safe point
        self.deferring = False  # inside the training loop: a safe point will come
        self.owner = os.getpid()  # the process that runs the run (DataLoader workers fork with this handler)

    def handler(self, signum: int, frame) -> None:
        if os.getpid() != self.owner:
            # a DataLoader worker: Ctrl-C reaches the whole process group, but the run's process decides and ends
            # its workers; a worker that died first would turn the stop into a failure (SIGTERM: data/workers.py)
            return
        if self.pending is not None or not self.deferring:
            self.deferring = False  # stopping now: later signals stop at once too
            raise Requeued(None) if signum == REQUEUE_SIGNAL else Stopped(signum)
        self.pending = signum
        log.warning("%s received: stopping at the end of this training batch (a second signal stops at once)",
                    signal.Signals(signum).name)


_requests = _Requests()


def stop_requested() -> int | None:
    """The stop signal waiting for its safe point in this process, if any."""
    return _requests.pending


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_signals(requeue: bool = False) -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Stopped`` while the block runs (at the next safe point inside a training loop
    that has ``StopAtSafePoints``). ``requeue``: under SLURM, SIGUSR1 raises ``Requeued`` likewise, and a
    ``Requeued`` leaving the block (the run recorded as requeued by then) requeues the job."""
    job = slurm_job_id() if requeue else None
    if not _main_thread():
        yield
        return
    signals = (*STOP_SIGNALS, *((REQUEUE_SIGNAL,) if job else ()))
    previous = {s: signal.signal(s, _requests.handler) for s in signals}
    _requests.__init__()
    try:
        yield
    except BaseException as e:
        if job is not None and isinstance(stop_behind(e), Requeued) and rank_zero_only.rank == 0:
            _requeue(job)
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requests.__init__()


def _requeue(job: str) -> None:
    # the requeue ends this job with SIGTERM: the state is saved and recorded, nothing is left to do, and a
    # Stopped raised now would only cut the clean-up short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result = subprocess.call(["scontrol", "requeue", job])
    if result != 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log.error("`scontrol requeue %s` failed (exit %d): the job is not requeued; resume it with the same "
                  "command + ckpt_path=last", job, result)
    else:
        log.warning("SLURM job %s requeued; the requeued job resumes from the run's newest checkpoint", job)


def slurm_job_id() -> str | None:
    """The job to requeue: an array task is named ``<array job>_<task>``; None outside a SLURM batch job."""
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive") or "SLURM_JOB_ID" not in os.environ:
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ["SLURM_JOB_ID"]


def hpc_checkpoint_path(folder: Path) -> Path:
    """``hpc_ckpt_<n+1>.ckpt``: Lightning's naming, so that its own SLURM resume would find it too."""
    names = (re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name) for p in folder.glob("hpc_ckpt_*.ckpt"))
    numbers = [int(m.group(1)) for m in names if m]
    return folder / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


_NONE, _STOP, _REQUEUE = 0, 1, 2  # what the ranks agree on: the largest request of any rank


class StopAtSafePoints(L.Callback):
    """The safe points of ``stop_on_signals``: from the start of training to its end, a stop signal waits for
    the end of the current training batch (after an epoch's last batch, for the next epoch's first or the
    fit's end: that state would resume into a finished epoch without its running means, and a mid-validation
    one without part of the validation). There all ranks agree (any rank's request stops all of them; a
    requeue wins over a stop: it saves more); then SIGUSR1 saves ``folder/hpc_ckpt_<n>.ckpt`` and raises
    ``Requeued``, SIGTERM/SIGINT raise ``Stopped``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _requests.deferring = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        # not after an epoch's last batch (EpochMetricsState restores the running means at a batch end)
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed < trainer.num_training_batches:
            self._stop_if_asked(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_asked(trainer)
        _requests.deferring = False  # testing and writing the results: a signal stops at once

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        _requests.deferring = False

    def _stop_if_asked(self, trainer: L.Trainer) -> None:
        pending = _requests.pending
        asked = _NONE if pending is None else _REQUEUE if pending == REQUEUE_SIGNAL else _STOP
        if trainer.world_size > 1:  # every rank reaches the same safe points: one small all-reduce each
            flag = torch.tensor(asked, device=trainer.strategy.root_device)
            asked = int(trainer.strategy.reduce(flag, reduce_op="max").item())
        if asked == _NONE:
            return
        _requests.deferring = False  # from here a signal stops at once
        if asked == _STOP:
            raise Stopped(pending if pending in STOP_SIGNALS else signal.SIGTERM)
        path = Path(trainer.strategy.broadcast(str(hpc_checkpoint_path(self.folder))))
        trainer.save_checkpoint(path)  # every rank takes part; rank 0 writes
        raise Requeued(path)
