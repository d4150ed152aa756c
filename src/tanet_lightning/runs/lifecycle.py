"""A run directory's life, read and written here only: ``run.json`` says what the directory holds.

    state     running | interrupted | requeued | finished | failed (``RunState``, runs/states.py)
    config    the resolved config minus the keys that cannot change results, and its hash (runs/identity.py)
    started, ended, reason, pid, host, attempts; ``fit_metrics`` once fitting has ended

Before writing anything into the directory, ``open_run`` takes the run lock and decides:

- a new directory starts;
- a finished run is kept: refused (``overwrite=true`` replaces it), or with ``ckpt_path=last`` reported
  as finished (exit 0, nothing retrained or rewritten: what finishes a stopped sweep's done jobs);
- an unfinished run resumes with ``ckpt_path=last`` from the newest loadable checkpoint of any kind
  (``last.ckpt``, ``hpc_ckpt_<n>.ckpt``, ``epoch_*.ckpt``: newest by the training step saved inside;
  unloadable ones are skipped, named), a requeued one also without it (SLURM runs the same command);
  otherwise it is refused, the two choices named. With no checkpoint file at all it starts again from
  the beginning; with checkpoint files of which none loads it is refused: nothing a run saved is deleted
  but by ``overwrite=true``;
- an evaluation (``eval``, ``train=false``: a run of a checkpoint, ``evaluated``) has nothing to resume:
  unfinished, it runs again;
- a run of another config is refused, the differing keys named; a broken ``run.json`` is refused, named.

A refused process writes nothing there: Hydra's ``.hydra/`` files and the job log (``RunLogFile``) wait
for the decision. ``metrics.json`` is written once, atomically, by the run that finishes, with the fit's
metrics kept across resumes.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ..base import locks
from ..base.errors import RunStateError
from ..base.files import atomic_write_json
from .callbacks import LAST
from .identity import (
    IGNORED,
    checkpoint_identity,
    checkpoint_label,
    config_differences,
    config_hash,
    config_of,
    evaluated,
    ignored,
)
from .outputs import METRICS, write_metrics
from .signals import Requeued, Stopped
from .states import STATE, STATES, RunState, read_state

# what run.json holds and what a run is of live in states.py and identity.py; importable from here too
__all__ = ["IGNORED", "LOCK", "STATE", "STATES", "Run", "RunLogFile", "RunState", "checkpoint_identity",
           "checkpoint_label", "config_hash", "config_of", "decide", "evaluated", "hydra_files", "ignored",
           "open_run", "rank", "read_state", "release_logs", "resume_checkpoint", "run_lock", "saved_checkpoints",
           "training_state"]

log = logging.getLogger("tanet_lightning")

LOCK = ".lock"


def rank() -> str:
    """DDP ranks other than 0 re-run the application in rank 0's directory: they never decide or record.

    Lightning's rule (``rank_zero_only.rank``): RANK, then LOCAL_RANK before SLURM_PROCID (a process Lightning
    started in a one-task SLURM job has SLURM_PROCID=0 too), then the global rank a Trainer set."""
    return str(rank_zero_only.rank)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------
# the checkpoint a run resumes from


def saved_checkpoints(out: Path) -> list[Path]:
    """Every checkpoint file a run saved: ``checkpoints/*.ckpt`` (last, epoch_*/best) and ``hpc_ckpt_<n>.ckpt``."""
    return sorted(p for p in (*(out / "checkpoints").glob("*.ckpt"), *out.glob("hpc_ckpt_*.ckpt")) if p.is_file())


def training_state(path: Path) -> tuple[int, int] | str:
    """(global_step, epoch) of a checkpoint that can resume training, else why it cannot (unreadable,
    truncated, weights only). Memory-mapped: the tensors are not read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch.load's errors of a damaged file vary (zip, unpickling, EOF): each is a skip
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"cannot be loaded ({type(e).__name__}: {first[:200]}; truncated?)"
    keys = ("state_dict", "optimizer_states", "global_step", "epoch")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in keys):
        return "holds no full training state (weights only?)"
    return int(ckpt["global_step"]), int(ckpt["epoch"])


def resume_checkpoint(out: Path) -> Path | None:
    """The newest loadable saved state of any kind: newest by the training step and epoch saved inside (not
    the file time: a copied or touched file keeps its step); at a tie ``last.ckpt`` (each finished epoch),
    then SLURM's ``hpc_ckpt_<n>.ckpt`` (mid-epoch), then ``epoch_*``. Unloadable files are skipped, named."""
    loadable: dict[Path, tuple[int, int, int, int]] = {}
    for path in saved_checkpoints(out):
        state = training_state(path)
        if isinstance(state, str):
            log.warning("%s %s: not resuming from it", path, state)
            continue
        kind = 2 if path.name == LAST else 1 if path.name.startswith("hpc_ckpt_") else 0
        loadable[path] = (*state, kind, path.stat().st_mtime_ns)
    return max(loadable, key=loadable.__getitem__, default=None)


@dataclass
class Run:
    """One attempt at the run in ``out``. ``done``: the run had finished already (``metrics`` are its own)."""

    out: Path
    record: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None
    done: bool = False
    metrics: dict[str, float] = field(default_factory=dict)

    def write(self, **changes: Any) -> None:
        if rank() != "0":
            return
        self.record.update(changes)
        atomic_write_json(self.out / STATE, self.record)

    def fit_ended(self, metrics: dict[str, float]) -> None:
        """Keep the fit's metrics: a resume that only tests (stopped while testing) still reports them."""
        self.write(fit_metrics=metrics)

    def finish(self, metrics: dict[str, float]) -> None:
        """metrics.json (once, whole, atomically), then the state that says it is final."""
        if rank() == "0":
            write_metrics(self.out, metrics)
        self.write(state=RunState.FINISHED, ended=_now(), reason="")

    def end(self, state: RunState, reason: str) -> None:
        if self.record.get("state") == RunState.REQUEUED and state == RunState.INTERRUPTED:
            return  # SLURM's SIGTERM after the requeue: still requeued
        self.write(state=state, ended=_now(), reason=reason)


def decide(cfg: DictConfig, out: Path) -> Run:
    """What this process may do in ``out`` (see the module's docstring); raises RunStateError to refuse.
    Writes nothing."""
    overwrite, tested = bool(cfg.get("overwrite", False)), evaluated(cfg)
    want_last = tested is None and cfg.get("ckpt_path") == "last"
    try:
        old = read_state(out)
    except RunStateError:
        if not overwrite:
            raise
        old = {"state": "unknown (broken run.json)"}
    config = config_of(cfg)
    record = {"config": config, "config_hash": config_hash(config), "pid": os.getpid(),
              "host": socket.gethostname(), "started": _now(), "ended": None, "reason": "", "attempts": 1}
    fresh = Run(out, record)
    if old is None:
        if want_last:
            log.warning("ckpt_path=last: %s holds no run to resume; starting from the beginning", out)
        return fresh
    if overwrite:
        return _cleared(fresh, f"overwrite=true: deleting the {old['state']} run in {out} and starting again")
    if old.get("config") is not None and old.get("config_hash") != record["config_hash"]:
        raise RunStateError(
            f"{out} holds a run of another config ({config_differences(old['config'], config)}): give this run "
            "another name (any override, e.g. tags=[v2]), or overwrite=true to delete that run and start this one")
    if old["state"] == RunState.FINISHED:
        if want_last:
            metrics = json.loads((out / METRICS).read_text()) if (out / METRICS).is_file() else {}
            log.info("ckpt_path=last: the run in %s has finished; its metrics are in %s (nothing to do)",
                     out, out / METRICS)
            return Run(out, old, done=True, metrics=metrics)
        what = f"a finished evaluation of {tested}" if tested else "a finished run"
        raise RunStateError(
            f"{out} holds {what} (metrics in {out / METRICS}); running it again would replace it: give "
            "this run another name (any override, e.g. tags=[again]), or overwrite=true to delete it and start again")
    what = str(old["state"]) if old["state"] != RunState.RUNNING else \
        "running when its process ended without a word (killed?)"
    reason = f": {old['reason']}" if old.get("reason") else ""
    if tested is not None:  # nothing to resume: every file of an evaluation is made again
        return _cleared(fresh, f"the evaluation in {out} did not finish ({what}{reason}); evaluating again")
    if not (want_last or old["state"] == RunState.REQUEUED):
        raise RunStateError(
            f"{out} holds an unfinished run ({what}{reason}): resume it with the same command + ckpt_path=last, "
            "or start it again with overwrite=true (deletes it), or give this run another name (e.g. tags=[v2])")
    ckpt = resume_checkpoint(out)
    if ckpt is None:
        saved = saved_checkpoints(out)
        if saved:  # what the run saved stays: only overwrite=true deletes it
            raise RunStateError(
                f"{out} holds an unfinished run ({what}) whose checkpoints cannot resume it "
                f"({'; '.join(f'{p.relative_to(out)} {training_state(p)}' for p in saved[:4])}); nothing was "
                "deleted: overwrite=true deletes the run and starts again, or give this run another name "
                "(e.g. tags=[v2])")
        return _cleared(fresh, f"ckpt_path=last: the unfinished run in {out} ({old['state']}) saved no "
                               "checkpoint (no epoch ended); deleting its logs and starting from the beginning")
    log.info("resuming the %s run in %s from %s", old["state"], out, ckpt)
    record.update(attempts=int(old.get("attempts", 1)) + 1, first_started=old.get("first_started", old.get("started")),
                  fit_metrics=old.get("fit_metrics"), resumed_from=str(ckpt))
    return Run(out, {k: v for k, v in record.items() if v is not None or k == "ended"}, resume_from=str(ckpt))


def _cleared(run: Run, message: str) -> Run:
    """Delete everything in the directory but the lock this process holds (the decision was to start over)."""
    log.warning("%s", message)
    run.record["clear"] = message  # done by open_run, once the decision is final
    return run


def _clear(out: Path) -> None:
    for p in out.iterdir():
        if p.name == LOCK:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


# ------------------------------------------------------------------------------------------------
# the whole life


@contextmanager
def run_lock(out: Path) -> Iterator[Callable[[], None]]:
    """Hold ``out/.lock`` while a run writes there: a second process on the same run directory (the same
    command twice) is refused at once, writing nothing, instead of mixing checkpoints and logs. Yields
    ``claim()``, which writes this process's id into the lock file (once the run is accepted)."""
    if rank() != "0":
        yield lambda: None
        return
    try:
        lock = locks.hold(out / LOCK)  # taking it leaves the file as it was: a refused run changes nothing
    except locks.Held as held:
        raise RunStateError(
            f"another process ({held.holder}) is writing to the run directory {out}; "
            "wait for it, or make this run's name differ (any override, e.g. tags=[second])") from None
    try:
        yield lock.claim
    finally:
        lock.release()


def hydra_files(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's .hydra/*.yaml (conf/train.yaml and conf/eval.yaml set hydra.output_subdir=null: ``open_run``
    writes them once the run directory is accepted, so that a refused process leaves it untouched)."""
    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is not None:
        return {}
    hc = HydraConfig.get()
    return {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": hc}), "overrides.yaml": hc.overrides.task}


@contextmanager
def open_run(cfg: DictConfig, hydra_files: dict[str, Any] | None = None) -> Iterator[Run]:
    """Lock ``cfg.paths.output_dir``, decide, and record how the attempt ends (``run.json``).

    ``hydra_files``: Hydra's ``.hydra/*.yaml`` (name -> config), written once the run is accepted."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rank() != "0":  # rank 0 decided and recorded; resume from what it chose
        state = read_state(out) or {}
        yield Run(out, state, resume_from=state.get("resumed_from") if state.get("attempts", 1) > 1 else None)
        return
    with _refusal_writes_nothing(out), run_lock(out) as claim:
        run = decide(cfg, out)
        if run.done:
            release_logs(out, write=False)
            yield run
            return
        claim()
        if run.record.pop("clear", None):
            _clear(out)
        for name, node in (hydra_files or {}).items():
            (out / ".hydra").mkdir(exist_ok=True)
            OmegaConf.save(node, out / ".hydra" / name)
        run.write(state=RunState.RUNNING)
        release_logs(out, write=True)
        try:
            yield run
        except Requeued as e:
            run.end(RunState.REQUEUED, e.reason)
            raise
        except (Stopped, SIGTERMException, KeyboardInterrupt) as e:
            name = getattr(e, "name", "SIGTERM" if isinstance(e, SIGTERMException) else "SIGINT")
            run.end(RunState.INTERRUPTED, f"stopped by {name}")
            raise
        except BaseException as e:
            run.end(RunState.FAILED, _reason(e))
            raise


@contextmanager
def _refusal_writes_nothing(out: Path) -> Iterator[None]:
    """A refusal (the lock, the state) drops the job log's records instead of writing them into ``out``."""
    try:
        yield
    except RunStateError:
        release_logs(out, write=False)
        raise


def _reason(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("full_key:")]
    return f"{type(e).__name__}: {lines[-1].strip() if lines else ''}"[:500]


# ------------------------------------------------------------------------------------------------
# the job's log file waits for the decision


class RunLogFile(logging.handlers.MemoryHandler):
    """Hydra's job log file (``hydra.job_logging.handlers.file`` in conf/train.yaml): a ``FileHandler`` behind
    a ``MemoryHandler`` with no target yet. Records wait in memory until the run directory is accepted (then
    written, and every later one as it comes) or refused (then dropped: a refused process leaves the
    directory as it found it). Applications with no run lifecycle (none calls ``release_logs``) get their
    records written when logging shuts down."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = True):
        # made first, so that logging's shutdown (last made, first closed) closes it after this buffer's flush
        self.file = logging.FileHandler(filename, mode, encoding, delay=True)  # the file opens at its first record
        self.baseFilename = self.file.baseFilename
        # capacity: never full; flushLevel: no record flushes early (nowhere to write until ``settle``)
        super().__init__(capacity=2**62, flushLevel=logging.CRITICAL + 1, target=None)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 -- logging's name
        super().setFormatter(fmt)
        self.file.setFormatter(fmt)  # the target formats what it writes

    def shouldFlush(self, record: logging.LogRecord) -> bool:  # noqa: N802 -- logging's name
        return self.target is not None  # once accepted, each record is written as it comes

    def settle(self, write: bool) -> None:
        """The run directory's decision: write what waited (and what comes), or drop it (and what comes)."""
        if write:
            self.setTarget(self.file)
            self.flush()
        else:
            self.buffer.clear()
            self.setLevel(logging.CRITICAL + 1)  # a refused run's later records are not kept either

    def close(self) -> None:
        if self.buffer and self.target is None:  # never settled: no lifecycle, so the records are the job's
            self.setTarget(self.file)
        super().close()  # flushes into the target
        self.file.close()


def release_logs(out: Path, write: bool) -> None:
    for h in logging.getLogger().handlers:
        if isinstance(h, RunLogFile) and Path(h.baseFilename).parent == out.resolve():
            h.settle(write)
