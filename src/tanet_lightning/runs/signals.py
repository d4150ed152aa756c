"""Signals that end a run early, turned into exceptions the run directory's lifecycle records.

SIGTERM (a scheduler's preemption or time limit) and SIGINT (Ctrl-C) raise ``Stopped`` wherever the run
is (data setup, a batch, testing): Python's default would end the process at once with nothing written,
and Lightning turns a KeyboardInterrupt into exit status 1. The exit status is 128 + the signal: 143, 130.

Under SLURM the time-limit warning is SIGUSR1 (``#SBATCH --signal=USR1@120``, hydra/launcher=slurm):
``requeue_on_signal`` saves ``hpc_ckpt_<n>.ckpt`` (the exact mid-epoch state), records the run as
requeued, asks SLURM to requeue the job (``scontrol requeue``) and stops: no test, no metrics.json.
The requeued job runs the same command, which resumes from that checkpoint. Lightning's own SLURM
handler would save and requeue too, but then go on training and testing the unfinished run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import lightning as L

log = logging.getLogger("tanet_lightning")

REQUEUE_SIGNAL = signal.SIGUSR1  # SLURMEnvironment's requeue_signal, and --signal=USR1@... in conf/hydra/launcher


class Stopped(SystemExit):
    """Raised by SIGTERM or SIGINT inside a run; a SystemExit so that Hydra's sweep loop does not take it for
    a failed job and go on."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


class Requeued(SystemExit):
    """The SLURM job was checkpointed and requeued: exit status 128 + SIGUSR1 = 138 (not 0: the run did not
    finish; SLURM has already put the job back in the queue, whatever the status)."""

    def __init__(self, checkpoint: Path):
        super().__init__(128 + REQUEUE_SIGNAL)
        self.checkpoint = checkpoint


def stop_behind(exc: BaseException) -> Stopped | None:
    """The ``Stopped`` that ``exc`` replaced, if any: a signal that lands inside a library's cleanup (an
    OmegaConf ``finally`` block, say) can surface as that library's own error, with ours as its context."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Stopped):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_signals():
    """SIGTERM and SIGINT raise ``Stopped`` while the block runs."""
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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


@contextmanager
def requeue_on_signal(trainer: L.Trainer, folder: Path, on_saved: Callable[[Path], None]):
    """Under SLURM: on SIGUSR1 save the state, call ``on_saved(path)`` (rank 0), requeue, raise ``Requeued``.

    Installed before ``trainer.fit``: Lightning then sees a handler already there and adds none of its own."""
    job = slurm_job_id()
    if job is None or not _main_thread():
        yield
        return

    def handler(signum, frame):
        path = hpc_checkpoint_path(folder)
        trainer.save_checkpoint(path)  # every rank takes part (all get the signal); rank 0 writes
        if trainer.is_global_zero:
            on_saved(path)
            # the requeue ends this job with SIGTERM: the checkpoint and the state are written, nothing is
            # left to save, and a Stopped raised now would only cut the clean-up short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            result = subprocess.call(["scontrol", "requeue", job])
            if result != 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                log.error("`scontrol requeue %s` failed (exit %d): the job is not requeued; %s holds the state, "
                          "resume with the same command + ckpt_path=last", job, result, path)
            else:
                log.warning("SLURM job %s requeued; the state is in %s, which the requeued job resumes", job, path)
        raise Requeued(path)

    previous = signal.signal(REQUEUE_SIGNAL, handler)
    try:
        yield
    finally:
        signal.signal(REQUEUE_SIGNAL, previous)
