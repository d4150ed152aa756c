"""Reading a sweep: the jobs of a Hydra multirun directory, run or not, as the report sees them.

Every job directory (``.hydra/overrides.yaml``, ``config_resolved.yaml``, ``metrics.json``; ``run.json``
says which job failed or was interrupted) becomes a ``Job``; the points the sweep was launched with but
never reached (a sweep stopped part-way) are added from its ``multirun.yaml``. Those points are computed
here from the sweeper's params and the command line with Hydra's public override parser, the way Hydra's
basic sweeper expands them (tests/analysis/test_sweep_points.py holds the two side by side).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ..runs.lifecycle import RunState, ignored
from .paper import sweep_params

STATES = ("failed", "interrupted", "unfinished", "not started")


@dataclass
class Job:
    path: Path
    overrides: dict[str, str]
    cfg: dict
    metrics: dict[str, float]
    status: str  # done | failed | interrupted | unfinished | not started
    reason: str = ""  # why a job failed: the last line of its error


def load_job(path: Path) -> Job:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = {k: v for k, v in (o.lstrip("+~").split("=", 1) for o in overrides if "=" in o) if not ignored(k)}
    resolved = path / "config_resolved.yaml"
    if resolved.is_file():
        cfg = yaml.safe_load(resolved.read_text())
    else:  # the job died before train() saved it: the unresolved Hydra copy still names the settings
        cfg = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False)
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    status, reason = "unfinished", ""
    run = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    if run.get("state") == RunState.FAILED:  # run.json: runs/states.py
        status, reason = "failed", run.get("reason", "")[:200]
    elif run.get("state") in (RunState.INTERRUPTED, RunState.REQUEUED):
        status = "interrupted"
    elif "test/top1" in metrics:
        status = "done"
    return Job(path, pairs, cfg, metrics, status, reason)


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """The jobs a basic sweep of these overrides launches: one per combination of the swept values (``a,b``,
    ``range(3)``), in order; a later override of a key replaces an earlier one (the command line wins over the
    config's params) and keeps the earlier one's place."""
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        elif override.is_sweep_override():  # interval(): Hydra's basic sweeper refuses it too
            raise ValueError(f"{key}: a basic sweep takes a list or range() of values, not an interval()")
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def planned_overrides(sweep_dir: Path) -> list[list[str]]:
    """Every job the sweep was launched with (from its multirun.yaml), started or not: a sweep stopped
    part-way (SIGTERM, time limit) still reports the points it never reached."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    root = OmegaConf.load(path)
    hydra_cfg = root.hydra
    if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []  # a search (hparams_search=...) proposes its trials as it goes: none is planned up front
    params = _sweep_params(hydra_cfg.sweeper, root)
    return sweep_points([*(f"{k}={v}" for k, v in params.items()), *hydra_cfg.overrides.task])


def _sweep_params(sweeper, root=None) -> dict:
    """The sweeper's params; a paper sweep's ``${tanet.sweep:NAME}`` is read from paper.py directly, so
    the report needs no resolver registered (resolvers belong to the applications); ``root`` (the sweep's
    config) says whether it ran on the synthetic data, where a sweep may pin more (paper.py ``synthetic``)."""
    raw = OmegaConf.to_container(sweeper, resolve=False).get("params") or {}
    if isinstance(raw, str):
        match = re.fullmatch(r"\$\{tanet\.sweep:\s*([\w-]+)\s*\}", raw)
        if not match:
            raise ValueError(f"hydra.sweeper.params={raw!r}: not a paper sweep reference")
        return sweep_params(match.group(1), _root_=root)
    return OmegaConf.to_container(sweeper, resolve=True).get("params") or {}


def _point(overrides: list[str]) -> tuple[str, ...]:
    """A job's sweep point: ckpt_path=last (the launch that finished a stopped sweep) is not part of it."""
    return tuple(sorted(o for o in overrides if not ignored(o.lstrip("+~").split("=", 1)[0])))


def collect(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: not a directory (give a Hydra multirun directory)")
    jobs = [load_job(p.parent.parent) for p in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"))]
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no job directories (*/.hydra/overrides.yaml) found")
    started = {_point(yaml.safe_load((j.path / ".hydra" / "overrides.yaml").read_text()) or []) for j in jobs}
    for overrides in planned_overrides(sweep_dir):
        if _point(overrides) not in started:
            pairs = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
            jobs.append(Job(sweep_dir / "(not started)", pairs, _planned_cfg(jobs[0].cfg, pairs), {}, "not started"))
    return jobs


def _planned_cfg(template: dict, pairs: dict[str, str]) -> dict:
    """A job's config for naming its row: a started job's config with the planned values put in."""
    cfg = OmegaConf.create(copy.deepcopy(template))
    for key, value in pairs.items():
        if key == "model/temporal":  # the option's file name is the module's name
            OmegaConf.update(cfg, "model.temporal", {"name": value}, merge=False, force_add=True)
        elif "/" in key:  # another group choice: its values are unknown here, so no paper row name
            return {}
        else:
            OmegaConf.update(cfg, key, yaml.safe_load(value.replace(":", ": ")) if "{" in value else
                             yaml.safe_load(value), force_add=True)
    return OmegaConf.to_container(cfg)


def experiment_of(jobs: list[Job]) -> str:
    return str(jobs[0].cfg.get("experiment_name", "")) or "sweep"


def cfg_value(job: Job, dotted: str, default=None):
    """One key of a job's config (``data.format``), or the default where the job's config has no such key."""
    node = job.cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def find_sweep(name_or_dir: str | Path, log_dir: str | Path | None = None) -> Path:
    """A sweep directory as given, or the newest sweep of an experiment name under the log directory
    (``$TANET_LOG_DIR``, else ``./logs``): ``report ablation_alpha_beta`` needs no timestamp."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    root = Path(log_dir or os.environ.get("TANET_LOG_DIR") or "logs") / "train" / "multiruns" / str(name_or_dir)
    sweeps = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    if not sweeps:
        raise FileNotFoundError(f"{name_or_dir}: neither a sweep directory nor an experiment with sweeps in {root}")
    return sweeps[-1]  # Hydra names sweeps by launch time (%Y-%m-%d_%H-%M-%S): the last is the newest
