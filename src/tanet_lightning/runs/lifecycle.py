"""A run directory's life, read and written here only: ``run.json`` says what the directory holds.

    state     running | interrupted | requeued | finished | failed
    config    the resolved config minus the keys that cannot change results (``IGNORED``), and its hash
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
import fcntl
import hashlib
import json
import logging
import os
import re
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

from ..base.errors import RunStateError
from ..base.files import atomic_write_json
from .callbacks import LAST
from .outputs import METRICS, write_metrics
from .signals import Requeued, Stopped

log = logging.getLogger("tanet_lightning")

STATE = "run.json"
STATES = ("running", "interrupted", "requeued", "finished", "failed")
LOCK = ".lock"
# the keys hydra.job.config.override_dirname leaves out of the run name (where and how a run is logged,
# where to resume from), plus overwrite: they may differ between the attempts of one run
IGNORED = ("ckpt_path", "logger", "paths", "trainer.enable_progress_bar", "overwrite", "hydra")


def ignored(key: str) -> bool:
    """Whether a dotted config key is one of ``IGNORED`` or under one: it cannot change a run's results."""
    return any(key == i or key.startswith(i + ".") for i in IGNORED)


def rank() -> str:
    """DDP ranks other than 0 re-run the application in rank 0's directory: they never decide or record.

    Lightning's rule (``rank_zero_only.rank``): RANK, then LOCAL_RANK before SLURM_PROCID (a process Lightning
    started in a one-task SLURM job has SLURM_PROCID=0 too), then the global rank a Trainer set."""
    return str(rank_zero_only.rank)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------
# the config a run is of


def config_of(cfg: DictConfig) -> dict[str, Any]:
    """The flat resolved config, minus ``IGNORED``; paths.* become placeholders before resolving, so a
    value built from them (checkpoint dirpath, data root) does not change when a run directory moves."""
    tree = OmegaConf.to_container(cfg, resolve=False)  # a plain copy: the job's config stays as it is
    for key in ("logger", "hydra"):  # not resolved at all (a W&B group's ${now:}, Hydra's runtime)
        tree.pop(key, None)
    tree["paths"] = {key: f"<paths.{key}>" for key in tree.get("paths") or {}}
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.create(tree), resolve=True), "")
    config = {k: v for k, v in flat.items() if not ignored(k)}
    tested = evaluated(cfg)
    if tested is not None:  # without fitting, the checkpoint tested is what the run is of: file and content
        config.update({f"evaluated.{k}": v for k, v in checkpoint_identity(tested).items()})
    return config


def evaluated(cfg: DictConfig) -> str | None:
    """The checkpoint a run tests without training it: ``eval``'s (whose config has no ``train`` key) and
    ``train=false``'s ``ckpt_path``; None for a run that fits (its ``ckpt_path`` only says where to resume)."""
    if OmegaConf.select(cfg, "train", default=False):
        return None
    tested = OmegaConf.select(cfg, "ckpt_path", default=None, throw_on_missing=False)
    return None if tested in (None, "last") else str(tested)


def checkpoint_label(ckpt: str) -> str:
    """A short name for a checkpoint path in a run name: its file name and a hash of its absolute path
    (relative paths are relative to the launch directory, the working directory of every application)."""
    path = os.path.abspath(ckpt)
    stem = re.sub(r"[^\w.+\-@%]", "_", Path(path).name.removesuffix(".ckpt"))[:40] or "ckpt"
    return f"{stem}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def checkpoint_identity(ckpt: str) -> dict[str, Any]:
    """What is evaluated: the absolute path and the content (bytes, sha256 of the file, or of a
    save_pretrained folder's files and names). A checkpoint rewritten at the same path is another run."""
    path = Path(os.path.abspath(ckpt))
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    digest, size = hashlib.sha256(), 0
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
    return {"path": str(path), "bytes": size, "sha256": digest.hexdigest() if files else None}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = [f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in keys[:6]]
    return "; ".join(shown) + (f"; and {len(keys) - 6} more" if len(keys) > 6 else "")


# ------------------------------------------------------------------------------------------------
# run.json


def read_state(out: Path) -> dict[str, Any] | None:
    """run.json, or what a directory of an older version holds (metrics.json: finished; checkpoints: not)."""
    path = out / STATE
    if path.is_file():
        return _checked_record(path)
    if (out / METRICS).is_file():
        return {"state": "finished", "config": None}
    if (out / "checkpoints").is_dir():
        return {"state": "interrupted", "config": None}
    return None


def _checked_record(path: Path) -> dict[str, Any]:
    """run.json as a dict with a known state, else one RunStateError naming the file, what is wrong and the fix."""
    try:
        text = path.read_text()
        record = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        problem = "is empty" if not text.strip() else f"is not valid JSON ({e}; truncated?)"
    else:
        if not isinstance(record, dict):
            problem = f"holds a JSON {type(record).__name__}, not the record of a run (an object)"
        elif "state" not in record:
            problem = "has no state"
        elif record["state"] not in STATES:
            problem = f"holds the state {record['state']!r}, not one of {', '.join(STATES)}"
        else:
            return record
    raise RunStateError(
        f"{path} {problem}: what this run directory holds is unknown, so nothing was done there. "
        f"overwrite=true deletes the run and starts again; or delete {path} to keep what the run saved (its "
        "checkpoints resume with ckpt_path=last; a metrics.json marks it finished)")


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
        self.write(state="finished", ended=_now(), reason="")

    def end(self, state: str, reason: str) -> None:
        if self.record.get("state") == "requeued" and state == "interrupted":
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
            f"{out} holds a run of another config ({_differences(old['config'], config)}): give this run "
            "another name (any override, e.g. tags=[v2]), or overwrite=true to delete that run and start this one")
    if old["state"] == "finished":
        if want_last:
            metrics = json.loads((out / METRICS).read_text()) if (out / METRICS).is_file() else {}
            log.info("ckpt_path=last: the run in %s has finished; its metrics are in %s (nothing to do)",
                     out, out / METRICS)
            return Run(out, old, done=True, metrics=metrics)
        what = f"a finished evaluation of {tested}" if tested else "a finished run"
        raise RunStateError(
            f"{out} holds {what} (metrics in {out / METRICS}); running it again would replace it: give "
            "this run another name (any override, e.g. tags=[again]), or overwrite=true to delete it and start again")
    what = old["state"] if old["state"] != "running" else "running when its process ended without a word (killed?)"
    reason = f": {old['reason']}" if old.get("reason") else ""
    if tested is not None:  # nothing to resume: every file of an evaluation is made again
        return _cleared(fresh, f"the evaluation in {out} did not finish ({what}{reason}); evaluating again")
    if not (want_last or old["state"] == "requeued"):
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
    with open(out / LOCK, "a+") as f:  # (an existing lock file is not modified by opening it)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunStateError(
                f"another process ({f.read().strip() or 'pid unknown'}) is writing to the run directory {out}; "
                "wait for it, or make this run's name differ (any override, e.g. tags=[second])") from None

        def claim() -> None:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            f.flush()

        try:
            yield claim
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
        run.write(state="running")
        release_logs(out, write=True)
        try:
            yield run
        except Requeued as e:
            run.end("requeued", e.reason)
            raise
        except (Stopped, SIGTERMException, KeyboardInterrupt) as e:
            name = getattr(e, "name", "SIGTERM" if isinstance(e, SIGTERMException) else "SIGINT")
            run.end("interrupted", f"stopped by {name}")
            raise
        except BaseException as e:
            run.end("failed", _reason(e))
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


class RunLogFile(logging.FileHandler):
    """Hydra's job log file (``hydra.job_logging.handlers.file`` in conf/train.yaml). Records wait in memory
    until the run directory is accepted (then written) or refused (then dropped: a refused process leaves
    the directory as it found it). Applications with no run lifecycle (none calls ``release_logs``) get
    their records written at the end."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = True):
        super().__init__(filename, mode, encoding, delay=True)
        self.pending: list[logging.LogRecord] | None = []
        self.dropping = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.dropping:
            return
        if self.pending is not None:
            self.pending.append(record)
            return
        super().emit(record)

    def settle(self, write: bool) -> None:
        pending, self.pending = self.pending or [], None
        self.dropping = not write
        for record in pending if write else ():
            super().emit(record)

    def close(self) -> None:
        if self.pending:
            self.settle(write=True)
        super().close()


def release_logs(out: Path, write: bool) -> None:
    for h in logging.getLogger().handlers:
        if isinstance(h, RunLogFile) and Path(h.baseFilename).parent == out.resolve():
            h.settle(write)
