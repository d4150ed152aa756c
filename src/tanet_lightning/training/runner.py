"""What train.py and eval.py share: config checks, instantiation, run files, W&B hygiene."""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ..base.errors import ConfigError
from ..data.formats import DatasetNotFoundError
from ..models.backbones import backbone_family
from ..models.flops import count
from ..models.temporal import TEMPORAL
from .module import TAM_FAMILY

log = logging.getLogger("tanet_lightning")


def check_config(cfg: DictConfig) -> None:
    """Fail early with the offending key named: unknown backbone/temporal module, T mismatch, ..."""
    model = cfg.get("model")
    if model is not None:
        try:
            backbone_family(model.backbone)
        except ValueError as e:
            raise ConfigError(f"model.backbone: {e}") from None
        name = model.temporal.name
        if name not in TEMPORAL:
            known = sorted(TEMPORAL)
            raise ConfigError(f"model/temporal={name!r} is not a temporal module; choose one of {known}")
        if model.num_frames != cfg.data.num_frames:
            raise ConfigError(
                f"model.num_frames={model.num_frames} but data.num_frames={cfg.data.num_frames}: "
                "the clip length must equal the model's T (TAM has no temporal downsampling); set both"
            )
        if model.position not in (None, "a", "b", "c", "d"):
            raise ConfigError(f"model.position={model.position!r}; choose one of a, b, c, d (null: its own place)")
        given = [o for o in _command_line() if o.lstrip("+~").startswith("model.tam")]
        if name not in TAM_FAMILY and given:  # configs may carry model.tam for any module; a user's value is a mistake
            raise ConfigError(f"{given[0]} is given but model/temporal={name} does not use it (only "
                              f"{', '.join(TAM_FAMILY)} do); drop it or pick a TAM module")


def _command_line() -> list[str]:
    """This job's overrides (command line and sweep point) when running under Hydra, else none."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_pretrained(model: DictConfig) -> None:
    """``model.pretrained=true`` needs the weights: in the local Hugging Face cache, or a reachable hub."""
    if not model.get("pretrained") or model.get("pretrained_path"):
        return
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    if (hub.expanduser() / f"models--timm--{model.backbone}").is_dir() or _hub_reachable():
        return
    raise ConfigError(
        f"model.pretrained=true downloads the ImageNet weights of {model.backbone}, but the weight hub cannot "
        "be reached from here: download them elsewhere and set model.pretrained_path=FILE "
        "(or model.pretrained=false to train from scratch)")


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def stop_on_sigterm():
    """SIGTERM (a scheduler's preemption or time limit) raises Lightning's SIGTERMException wherever the
    run is (data setup, a batch, testing), so the caller can record the stop and exit non-zero; Python's
    default would end the process at once with nothing written. The last finished epoch is already on
    disk (checkpoints/last.ckpt, written atomically)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SIGTERMException()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def run_lock(out: Path):
    """Hold ``out/.lock`` while a run writes there: a second process on the same run directory (the same
    command twice) fails at once instead of mixing checkpoints and logs. DDP ranks other than 0 (which
    re-run this code in the same directory) do not take it."""
    rank = next((os.environ[v] for v in ("RANK", "SLURM_PROCID", "LOCAL_RANK") if os.environ.get(v)), "0")
    if rank != "0":
        yield
        return
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(
                f"another process ({f.read().strip() or 'pid unknown'}) is writing to the run directory {out}; "
                "wait for it, or make this run's name differ (any override, e.g. tags=[second])") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


NO_DATASET_HINT = (
    "No such dataset on this machine? `+preset=synthetic` runs the same experiment on the embedded "
    "synthetic motion videos (generated on first use, no download)."
)


def instantiate_data(cfg: DictConfig):
    """The DataModule of ``cfg.data``; a missing or malformed dataset is a ConfigError that says what to set."""
    try:
        return instantiate(cfg.data)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, DatasetNotFoundError) and cfg.data.get("format") != "synthetic":
            raise ConfigError(f"{cause}\n{NO_DATASET_HINT}") from None
        if isinstance(cause, ValueError):  # AnnotationError, or a value the DataModule refuses
            raise ConfigError(str(cause)) from None
        raise


def seed(cfg: DictConfig) -> None:
    """Seed everything (0 is a seed; null skips) and cap the CPU threads when asked."""
    if cfg.get("torch_threads"):  # e.g. 1 per job when several jobs share a small machine
        torch.set_num_threads(int(cfg.torch_threads))
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)


def instantiate_dict(node: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every entry of a callbacks/logger group (null disables one); no `_target_` is an error."""
    out = []
    for key, entry in (node or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise ConfigError(f"{what}.{key} has no _target_; every {what} entry must be instantiable")
        out.append(instantiate(entry))
    return out


def output_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_resolved_config(cfg: DictConfig, path: Path) -> dict:
    """The resolved config beside the run (Hydra's .hydra/config.yaml keeps interpolations)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (path / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    return resolved


def log_config(loggers: list, resolved: dict, model: torch.nn.Module | None = None) -> None:
    params = dict(resolved)
    if model is not None:
        params["params/total"] = sum(p.numel() for p in model.parameters())
        params["params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for lg in loggers:
        lg.log_hyperparams(params)


def model_complexity(net: torch.nn.Module, datamodule) -> dict[str, float]:
    """Parameters and paper-convention GFLOPs of one training-size clip, counted on the meta device."""
    size = datamodule.settings.crop_size
    flops, _, params = count(copy.deepcopy(net).to_empty(device="meta"), (1, net.num_frames, 3, size, size))
    return {"model/params": float(params), "model/gflops": round(flops, 4)}


def log_summary(loggers: list, values: dict[str, float]) -> None:
    """Values measured once per run (parameters, GFLOPs) into the W&B run summary, where the sweep's
    W&B report charts them per run; the CSV/TensorBoard loggers have them in metrics.json already."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update(values)


def to_python(metrics: dict) -> dict[str, float]:
    return {k: (v.item() if isinstance(v, torch.Tensor) else float(v)) for k, v in metrics.items()}


def write_bad_files(out: Path, rows: list[tuple[str, ...]]) -> None:
    """bad_files.tsv (split, path, reason) beside metrics.json: every unreadable file the run met."""
    if rows:
        lines = ["split\tpath\treason", *("\t".join(r) for r in rows)]
        (out / "bad_files.tsv").write_text("\n".join(lines) + "\n")


def write_metrics(path: Path, metrics: dict[str, float]) -> None:
    (path / "metrics.json").write_text(json.dumps(dict(sorted(metrics.items())), indent=1) + "\n")


def finish_wandb() -> None:
    """End the W&B run of this job so that the next job of a sweep does not append to it."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
