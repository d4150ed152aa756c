"""One typed schema for every application's config: ``validate(cfg, app)`` before anything is read or written.

Each group is compared with its dataclass (``groups.py``): types, ranges, choices, ``???`` keys and
unknown keys (with the closest known key suggested); every instantiated node's keys are checked
against its `_target_`'s signature. Then the rules between keys. All problems are reported at once,
in one ``ConfigError`` whose lines each name the full key, the value and the fix.

The argparse applications (convert, ensemble, complexity) check their arguments with the same
fields: ``validate_args(args, app)``. ``ValidateConfig`` is the Hydra callback that runs ``validate``
before Hydra creates the run directory (register it under ``hydra.callbacks``).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from ...base.errors import ConfigError, handle_user_errors
from ...models.fit import check_clip_length
from ...models.temporal import TEMPORAL
from ...training.diagnose import orders_problem
from . import groups as g
from .fields import Missing, check_node, check_target_keys, check_value, non_finite_values, read, unknown_key

__all__ = ["MONITORABLE", "ValidateConfig", "override_problems", "validate", "validate_args"]

MONITORABLE = g.MONITORABLE

# application -> (its own keys, its groups and their schemas; open groups take other `_target_` arguments)
APPS: dict[str, tuple[type, dict[str, tuple[type, bool]]]] = {
    "train": (g.Train, {"data": (g.Data, False), "model": (g.Model, False), "optimizer": (g.Optimizer, True),
                        "scheduler": (g.Scheduler, True), "trainer": (g.Trainer, True),
                        "callbacks": (g.Callback, True), "logger": (g.Logger, True), "paths": (g.Paths, False),
                        "diagnose": (g.Diagnose, False)}),
    "eval": (g.Eval, {"data": (g.Data, False), "trainer": (g.Trainer, True), "logger": (g.Logger, True),
                      "paths": (g.Paths, False), "diagnose": (g.Diagnose, False)}),
    "predict": (g.Predict, {"data": (g.Data, False), "paths": (g.Paths, False),  # +data=NAME: optional
                            "diagnose": (g.Diagnose, False)}),
    "export": (g.Export, {"paths": (g.Paths, False)}),
    "visualize": (g.Visualize, {"paths": (g.Paths, False)}),
    "prepare": (g.Prepare, {"data": (g.Data, False), "paths": (g.Paths, False)}),
}
ENTRY_GROUPS = ("callbacks", "logger")  # a mapping of named entries, each its own instantiated node


def validate(cfg: DictConfig, app: str) -> None:
    """Refuse ``cfg`` (the composed config of ``app``: train, eval, predict, export, visualize, prepare) with one
    ConfigError listing every problem, before the application reads data or writes a file."""
    own, groups = APPS[app]
    errors: list[str] = []
    for key in cfg.keys():
        if key not in groups and key != "hydra" and key not in own.__dataclass_fields__:
            errors.append(unknown_key(str(key), str(key), [*own.__dataclass_fields__, *groups]))
    check_node(cfg, own, "", errors, closed=False)  # closed above, with the groups among the known keys
    for name, (schema, open_) in groups.items():
        node = read(cfg, name, name, errors) if name in cfg else None
        if node is Missing or node is None:
            continue
        if not isinstance(node, DictConfig):
            errors.append(f"{name}={node!r} must be a config group (e.g. {name}=default), not a value")
            continue
        for prefix, entry in _entries(name, node, errors):
            check_node(entry, schema, prefix, errors, closed=not open_)
            if open_:  # a closed group's dataclass lists its keys already
                check_target_keys(entry, prefix, errors)
    for key in cfg.keys():  # typed or not: an open group's other arguments too
        if key != "hydra":
            non_finite_values(read(cfg, key, str(key), []), f"{key}.", errors)
    # the rules between keys first: their messages say more than a derived key's (scheduler.T_max)
    errors = [e for rule in RULES for e in _safely(rule, cfg, app)] + errors
    if errors:
        raise ConfigError(_report(errors))


def _safely(rule, cfg: DictConfig, app: str) -> list[str]:
    try:
        return rule(cfg, app)
    except OmegaConfBaseException:  # a key that cannot be resolved: the per-key checks name it
        return []


def _entries(name: str, node: DictConfig, errors: list[str]):
    if name not in ENTRY_GROUPS:
        yield f"{name}.", node
        return
    for key in node.keys():
        entry = read(node, key, f"{name}.{key}", errors)
        if entry is None or entry is Missing:
            continue  # null disables an entry
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            errors.append(f"{name}.{key}={entry!r} has no _target_: every {name} entry must be instantiable "
                          f"(or null to disable it)")
            continue
        yield f"{name}.{key}.", entry


def _report(errors: list[str], what: str = "config values") -> str:
    errors = list(dict.fromkeys(errors))
    if len(errors) == 1:
        return errors[0]
    return f"{len(errors)} {what} cannot work:\n" + "\n".join(f"  {e}" for e in errors)


# ------------------------------------------------------------------------------------------------
# Rules between keys. Each returns its problems (empty: fine); they run whatever the per-key checks
# found, so they read values defensively (a wrong type is the per-key check's to report).


def _get(cfg: DictConfig, key: str, default=None):
    return OmegaConf.select(cfg, key, default=default, throw_on_missing=False)


def rule_something_to_do(cfg: DictConfig, app: str) -> list[str]:
    if app == "train" and _get(cfg, "train", True) is False and _get(cfg, "test", True) is False:
        return ["train=false test=false does nothing: drop one of them (test=false: train only; "
                "train=false ckpt_path=PATH: test a checkpoint)"]
    return []


def rule_epochs(cfg: DictConfig, app: str) -> list[str]:
    """The lr schedules are per epoch (scheduler.T_max follows trainer.max_epochs): an unbounded or
    step-bounded run would flip a cosine schedule between its maximum and 0 every epoch, or crash."""
    if app != "train" or not _get(cfg, "train", True) or "trainer" not in cfg:
        return []
    epochs = _get(cfg, "trainer.max_epochs")
    if isinstance(epochs, int) and epochs >= 1:
        return []
    steps = _get(cfg, "trainer.max_steps", -1)
    also = (f" (trainer.max_steps={steps} may stop it earlier, but the schedule needs the epochs)"
            if isinstance(steps, int) and steps >= 1 else "")
    return [f"trainer.max_epochs={epochs!r} must be an integer >= 1: the lr schedules are defined per epoch"
            f"{also}; give trainer.max_epochs=N"]


def rule_monitor_mode(cfg: DictConfig, app: str) -> list[str]:
    """A checkpoint that keeps the lowest accuracy (or the highest loss) is a silent wrong result."""
    out = []
    for key, entry in (_get(cfg, "callbacks") or {}).items():
        if not isinstance(entry, DictConfig):
            continue
        monitor, mode = entry.get("monitor"), entry.get("mode")
        if not isinstance(monitor, str) or mode not in ("min", "max"):
            continue
        want = "min" if monitor.endswith(("loss", "loss_epoch")) else "max"
        if mode != want:
            out.append(f"callbacks.{key}.mode={mode} keeps the {'lowest' if want == 'max' else 'highest'} "
                       f"{monitor}: give callbacks.{key}.mode={want}")
    return out


def rule_crop_fits(cfg: DictConfig, app: str) -> list[str]:
    """A crop larger than the decoded short side cannot be cut."""
    short = _get(cfg, "data.short_side")
    if not isinstance(short, int):
        return []
    out = []
    for key in ("crop_size", "test_crop_size"):
        crop = _get(cfg, f"data.{key}")
        if isinstance(crop, int) and crop > short:
            out.append(f"data.{key}={crop} is larger than data.short_side={short} (frames are resized to that "
                       f"short side before cropping): give data.{key}<={short} or data.short_side>={crop}")
    return out


def rule_temporal_options(cfg: DictConfig, app: str) -> list[str]:
    """model.temporal.name is a registered module; its other keys are the module's arguments (NL also
    takes `blocks`)."""
    temporal = _get(cfg, "model.temporal")
    if not isinstance(temporal, DictConfig) or not isinstance(temporal.get("name"), str):
        return []
    if temporal.name not in TEMPORAL:
        return [f"model/temporal={temporal.name!r} is not a temporal module; choose one of {sorted(TEMPORAL)} "
                "(model/temporal=NAME)"]
    spec = TEMPORAL[temporal.name]
    if spec.factory is None:
        known, open_ = set(), False
    else:
        params = inspect.signature(spec.factory).parameters.values()
        known = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {
            "channels", "conv", "num_frames"}
        open_ = any(p.kind == p.VAR_KEYWORD for p in params)
    if spec.name == "nl":
        known.add("blocks")
    if open_:
        return []
    return [unknown_key(f"model.temporal.{k}", str(k), known, owner=f"model/temporal={spec.name} takes")
            for k in temporal.keys() if k != "name" and k not in known]


def rule_paths(cfg: DictConfig, app: str) -> list[str]:
    """Directories and files the application will write: never under an existing file, and writable."""
    out = []
    for key in ("paths.log_dir", "paths.data_dir"):
        path = _get(cfg, key)
        # an existing data directory may be read-only (a complete dataset: nothing is written there)
        if isinstance(path, str) and not (_writable(Path(path)) or key == "paths.data_dir" and Path(path).is_dir()):
            env = f"TANET_{key.split('.')[1].split('_')[0].upper()}_DIR"
            out.append(f"{key}={path} is not a writable directory{_under_file_text(Path(path))}; point it "
                       f"elsewhere ({key}=DIR or {env}=DIR)")
    for key in {"predict": ("out",), "export": ("out",), "visualize": ("out_dir",), "prepare": ("out",)}.get(app, ()):
        path = _get(cfg, key)
        is_file = key == "out" and app != "prepare"  # prepare's out is a folder
        if isinstance(path, str) and not _writable(Path(path).parent if is_file else Path(path)):
            out.append(f"{key}={path} cannot be written{_under_file_text(Path(path))}; give {key}=PATH in a "
                       "writable directory")
    return out


def rule_tracking_stores(cfg: DictConfig, app: str) -> list[str]:
    """An MLflow store (``logger.*.tracking_uri``, from MLFLOW_TRACKING_URI; or ``save_dir``) on this machine
    must be writable: MLflow finds out only once the run has started, with a database error."""
    out = []
    for key, entry in (_get(cfg, "logger") or {}).items():
        if not isinstance(entry, DictConfig) or not str(entry.get("_target_", "")).endswith("MLFlowLogger"):
            continue
        field, uri = ("tracking_uri", entry.get("tracking_uri")) if entry.get("tracking_uri") is not None \
            else ("save_dir", entry.get("save_dir", "./mlruns"))
        path = _local_store(str(uri))
        if path is None:
            continue  # a server (http://...): reached by MLflow itself
        where = path.parent if path.suffix == ".db" or str(uri).startswith("sqlite:") else path
        if not _writable(where) or path.is_file() and not os.access(path, os.W_OK):
            out.append(f"logger.{key}.{field}={uri}: MLflow's store {path} cannot be written"
                       f"{_under_file_text(path)}; give MLFLOW_TRACKING_URI=sqlite:///DIR/mlflow.db in a writable "
                       f"directory (or a tracking server's http:// URL), or logger.{key}.{field}=...")
    return out


def _local_store(uri: str) -> Path | None:
    """The file or folder of a local MLflow store URI (sqlite:///PATH, file:PATH, a plain path); None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file:"):
        return Path(urlparse(uri).path)
    return None if re.match(r"^[a-z][a-z0-9+.-]*://", uri) else Path(uri)


def _writable(path: Path) -> bool:
    """Writable, or creatable: the nearest existing ancestor is a writable directory."""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK)


def _under_file_text(path: Path) -> str:
    for parent in (path, *path.parents):
        if parent.exists():
            return f" ({parent} is a file, not a directory)" if parent.is_file() else ""
    return ""


def rule_diagnose_frames(cfg: DictConfig, app: str) -> list[str]:
    """+diagnose=time's orders must exist at the clip length (a shuffle needs 3 frames); predict's T
    comes from the checkpoint and is checked when the first video is read."""
    orders, frames = _get(cfg, "diagnose.orders"), _get(cfg, "data.num_frames")
    if not isinstance(frames, int) or not isinstance(orders, ListConfig):
        return []
    problem = orders_problem(list(orders), frames)
    return [f"data.num_frames={frames}, +diagnose=time: {problem}"] if problem else []


def rule_clip_length(cfg: DictConfig, app: str) -> list[str]:
    """model.num_frames == data.num_frames, by the one clip-length rule (models/fit.py)."""
    clip, model = _get(cfg, "data.num_frames"), _get(cfg, "model.num_frames")
    if app != "train" or not isinstance(clip, int) or not isinstance(model, int):
        return []
    try:
        check_clip_length(clip, model, what=f"data.num_frames={clip}",
                          fix=f"set both to the same value (model.num_frames={model})")
    except ConfigError as e:
        return [str(e)]
    return []


RULES: tuple[Callable[[DictConfig, str], list[str]], ...] = (
    rule_something_to_do, rule_epochs, rule_monitor_mode, rule_crop_fits, rule_temporal_options, rule_paths,
    rule_tracking_stores, rule_clip_length, rule_diagnose_frames,
)


# ------------------------------------------------------------------------------------------------
# Before Hydra writes anything


class ValidateConfig(HydraCallback):
    """``hydra.callbacks``: validate a single run's config before Hydra creates its run directory, so a
    refused command leaves nothing behind. (A sweep's jobs are validated by the application itself.)"""

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs) -> None:
        app = (config_name or "").split("/")[-1]
        if app in APPS:
            handle_user_errors(self._validate)(config, app)  # Hydra would turn an exception into a warning

    @staticmethod
    def _validate(config: DictConfig, app: str) -> None:
        cfg = copy.deepcopy(config)  # Hydra's own stays as it is
        HydraConfig.instance().set_config(cfg)  # `hydra:` interpolations (the run name) resolve
        if problems := override_problems(cfg):
            raise ConfigError(_report(problems))
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):  # as Hydra will set it
            cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
        HydraConfig.instance().set_config(cfg)
        validate(cfg, app)


def override_problems(cfg: DictConfig) -> list[str]:
    """Command-line values that are interpolations which cannot be resolved, named by the key the user gave.
    (The run name repeats every override's text, so resolving it would report them all at
    ``hydra.job.override_dirname``.)"""
    errors: list[str] = []
    task = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    for text in OmegaConf.to_container(task, resolve=False) if isinstance(task, ListConfig) else []:  # as typed
        key, sep, value = str(text).partition("=")
        key = key.lstrip("+~")
        if not sep or "${" not in value or "/" in key or "@" in key:
            continue  # a group choice (model/temporal=...) is not a value
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
        if isinstance(node, DictConfig) and leaf in node.keys():
            found: list[str] = []
            read(node, leaf, key, found)
            errors += [f"{e} (given as {key}={value}): give a value, or ${{KEY}} of a key the config has"
                       for e in found]
    return errors


# ------------------------------------------------------------------------------------------------
# argparse applications

ARGS = {"convert": g.ConvertArgs, "ensemble": g.EnsembleArgs, "complexity": g.ComplexityArgs}
POSITIONAL = {"src", "scores", "sweep"}


def validate_args(args: argparse.Namespace, app: str) -> None:
    """The arguments of an argparse application, with the same fields (named by their flags)."""
    schema = ARGS[app]
    errors: list[str] = []
    hints = typing.get_type_hints(schema)
    for f in schema.__dataclass_fields__.values():
        if not hasattr(args, f.name):
            continue
        name = f.name if f.name in POSITIONAL else "--" + f.name.replace("_", "-")
        value = getattr(args, f.name)
        value = str(value) if isinstance(value, Path) else value
        check_value(value, hints[f.name], f.metadata, name, errors)
    for flag in ("out", "page"):
        value = getattr(args, flag, None)
        if value is not None and not _writable(Path(value).parent):
            errors.append(f"--{flag} {value} cannot be written{_under_file_text(Path(value))}: give a path in a "
                          "writable directory")
    if app == "ensemble" and args.weights is not None and len(args.weights) != len(args.scores):
        errors.append(f"--weights has {len(args.weights)} values for {len(args.scores)} score files: give one "
                      "weight per file")
    if errors:
        raise ConfigError(_report(errors, "arguments"))
