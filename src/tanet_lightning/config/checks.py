"""Config checks that need no data and that the schema (config/schema) cannot make: a value the user
typed for a module that ignores it, ImageNet weights this machine cannot reach, and a SLURM job whose tasks
are not the processes the trainer counts."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig

from ..base.errors import ConfigError, UserError
from ..models.temporal import TAM_FAMILY


def check_config(cfg: DictConfig) -> None:
    """What the schema (config/schema) cannot see: the command line's own words."""
    model = cfg.get("model")
    if model is not None:
        name = model.temporal.name
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


class DiskFull(UserError):
    """The disk of the run directory filled up while the run wrote there (checkpoints, metrics, logs)."""


def disk_full_behind(e: BaseException, out: Path) -> DiskFull | None:
    """A DiskFull for an exception caused (at any depth: Lightning and fsspec wrap it) by a full disk or quota."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            named = seen.filename and str(seen.filename).startswith(str(out))  # (a library's temporary file: not)
            what = f"writing {seen.filename}" if named else "writing its checkpoints, metrics or logs"
            removed = _remove_partial_checkpoints(out)  # the room run.json needs to say `failed`
            what += f"; removed the partial checkpoint(s) {', '.join(removed)}" if removed else ""
            return DiskFull(f"no space left on the device of the run directory {out} ({what}): free space there, "
                            "then resume with the same command + ckpt_path=last (or give paths.log_dir=DIR on "
                            "another disk)")
        seen = seen.__cause__ or seen.__context__
    return None


def _remove_partial_checkpoints(out: Path) -> list[str]:
    """Checkpoints cut short by the full disk: a checkpoint is a zip archive, whose directory is written last."""
    import zipfile

    partial = [p for p in (*out.glob("checkpoints/*.ckpt"), *out.glob("hpc_ckpt_*.ckpt"))
               if p.is_file() and not zipfile.is_zipfile(p)]
    for p in partial:
        p.unlink()
    return [p.name for p in partial]


# ----------------------------------------------------------------------------------------------------
# the SLURM job's layout against the trainer's (Lightning#20391)


def check_slurm_layout(trainer: DictConfig, env: Mapping[str, str] = os.environ) -> None:
    """Under srun (Lightning's SLURMEnvironment: SLURM_NTASKS set, a job not named bash/interactive) the
    tasks SLURM starts must be the processes Lightning counts: trainer.num_nodes nodes x trainer.devices
    per node. Lightning checks only part of it and, with ``--ntasks`` below ``--ntasks-per-node`` x nodes,
    counts processes that never start (the job hangs at the first collective, or trains on fewer GPUs)."""
    if "SLURM_NTASKS" not in env or env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return
    ntasks = _slurm_int(env, "SLURM_NTASKS")
    node_var = next((v for v in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES") if env.get(v)), None)
    nodes = _slurm_int(env, node_var) if node_var else 1
    where = f"SLURM_NTASKS={ntasks} on {nodes} node{'s' * (nodes > 1)}" + (f" ({node_var}={nodes})" if node_var else "")
    launcher = "hydra/launcher=slurm: hydra.launcher.tasks_per_node=G, its default is hydra.launcher.gpus_per_node"
    if env.get("SLURM_NTASKS_PER_NODE"):
        per_node = _slurm_int(env, "SLURM_NTASKS_PER_NODE")
        if per_node * nodes != ntasks:
            raise ConfigError(
                f"this SLURM job starts {where} but asks for SLURM_NTASKS_PER_NODE={per_node} tasks per node: "
                f"Lightning would count {per_node * nodes} processes and wait for the ones never started "
                f"(Lightning#20391). Give the tasks per node only: #SBATCH --ntasks-per-node=G (one per GPU) "
                f"without --ntasks ({launcher})")
    num_nodes = int(trainer.get("num_nodes") or 1)
    if num_nodes != nodes:
        raise ConfigError(
            f"trainer.num_nodes={num_nodes} but this SLURM job has {nodes} node{'s' * (nodes > 1)} ({where}): "
            f"set trainer.num_nodes={nodes} (trainer=ddp reads SLURM_JOB_NUM_NODES), or allocate "
            f"#SBATCH --nodes={num_nodes} (hydra/launcher=slurm: hydra.launcher.nodes={num_nodes})")
    if ntasks % nodes:
        raise ConfigError(f"this SLURM job starts {where}, not the same number on every node: "
                          f"#SBATCH --ntasks-per-node=G (one per GPU) without --ntasks ({launcher})")
    per_node, devices = ntasks // nodes, _devices_per_node(trainer)
    if devices is not None and devices != per_node:
        raise ConfigError(
            f"trainer.devices={trainer.get('devices')} is {devices} device{'s' * (devices > 1)} per node here, "
            f"but SLURM starts {per_node} task{'s' * (per_node > 1)} per node ({where}); Lightning runs one "
            f"process per task and device: set trainer.devices={per_node}, or #SBATCH --ntasks-per-node="
            f"{devices} with as many GPUs (hydra/launcher=slurm: hydra.launcher.gpus_per_node={devices}, "
            f"tasks_per_node follows it)")


def _slurm_int(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:  # srun writes plain counts here; "4(x2)" is SLURM_TASKS_PER_NODE's form, taken as its first count
        return int(value.split("(")[0].split(",")[0])
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a task or node count; run the job under srun") from None


def _devices_per_node(trainer: DictConfig) -> int | None:
    """trainer.devices as the number of devices of one node, as Lightning resolves it (-1/"auto": every
    visible GPU, or 1 CPU process); None when it cannot be known before the trainer is built."""
    devices, accelerator = trainer.get("devices", "auto"), str(trainer.get("accelerator", "auto"))
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if not isinstance(devices, int) and devices != "auto":
        return len(devices) if hasattr(devices, "__len__") else None  # a list of device ids
    if isinstance(devices, int) and devices > 0:
        return devices
    import torch

    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu:
        return torch.cuda.device_count() or None  # no GPU visible: Lightning's own error says so
    if accelerator in ("cpu", "auto") and devices == "auto":
        return 1
    return None  # -1 on CPU, other accelerators: Lightning's own parsing decides (and errs)
