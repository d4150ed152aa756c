"""One typed schema for every application's config: ``validate(cfg, app)`` before anything is read or written.

Each group is compared with its pydantic model (``groups.py``; ``data`` and ``model`` are the models of
the constructors' own signatures): types, ranges, choices, ``???`` keys and unknown keys (with the
closest known key suggested); every instantiated node's keys are checked against its `_target_`'s
signature. Then the rules between keys. All problems are reported at once,
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
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from ...base.errors import ConfigError, handle_user_errors
from ...base.typed import problems, report, show, unknown_key
from ...models.backbones import VIT_FAMILIES, backbone_family
from ...models.fit import check_clip_length
from ...models.insertion import POSITIONS, VIT_POSITIONS
from ...models.temporal import TEMPORAL
from ...training.diagnose import orders_problem
from . import groups as g
from .nodes import Missing, check_target_keys, non_finite_values, read, values

__all__ = ["MONITORABLE", "ValidateConfig", "override_problems", "validate", "validate_args"]

MONITORABLE = g.MONITORABLE

# application -> (its own keys, its groups; open groups take other `_target_` arguments: their signature's)
APPS: dict[str, tuple[type, dict[str, type]]] = {
    "train": (g.Train, {"data": g.Data, "model": g.Model, "optimizer": g.Optimizer, "scheduler": g.Scheduler,
                        "trainer": g.Trainer, "callbacks": g.Callback, "logger": g.Logger, "paths": g.Paths,
                        "diagnose": g.Diagnose}),
    "eval": (g.Eval, {"data": g.Data, "trainer": g.Trainer, "logger": g.Logger, "paths": g.Paths,
                      "diagnose": g.Diagnose}),
    "predict": (g.Predict, {"data": g.Data, "paths": g.Paths, "diagnose": g.Diagnose}),  # +data=NAME: optional
    "export": (g.Export, {"paths": g.Paths}),
    "visualize": (g.Visualize, {"paths": g.Paths}),
    "prepare": (g.Prepare, {"data": g.Data, "paths": g.Paths}),
}
ENTRY_GROUPS = ("callbacks", "logger")  # a mapping of named entries, each its own instantiated node


def validate(cfg: DictConfig, app: str) -> None:
    """Refuse ``cfg`` (the composed config of ``app``: train, eval, predict, export, visualize, prepare) with one
    ConfigError listing every problem, before the application reads data or writes a file."""
    own, groups = APPS[app]
    errors: list[str] = []
    for key in cfg.keys():
        if key not in groups and key != "hydra" and key not in own.model_fields:
            errors.append(unknown_key(str(key), str(key), [*own.model_fields, *groups]))
    top = values(cfg, own, "", errors)
    errors += problems(own, {k: v for k, v in top.items() if k in own.model_fields})
    for name, schema in groups.items():
        node = read(cfg, name, name, errors) if name in cfg else None
        if node is Missing or node is None:
            continue
        if not isinstance(node, DictConfig):
            errors.append(f"{name}={node!r} must be a config group (e.g. {name}=default), not a value")
            continue
        for prefix, entry in _entries(name, node, errors):
            errors += problems(schema, values(entry, schema, prefix, errors), prefix)
            if schema.model_config.get("extra") == "allow":  # a closed group's model lists its keys already
                check_target_keys(entry, prefix, errors)
    for key in cfg.keys():  # typed or not: an open group's other arguments too
        if key != "hydra":
            non_finite_values(read(cfg, key, str(key), []), f"{key}.", errors)
    # the rules between keys first: their messages say more than a derived key's (scheduler.T_max)
    errors = [e for rule in RULES for e in _safely(rule, cfg, app)] + errors
    if errors:
        raise ConfigError(report(errors))


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


def rule_warmup(cfg: DictConfig, app: str) -> list[str]:
    """A warm-up as long as the run leaves no schedule to decay (training/schedules.warmup_cosine)."""
    warmup, epochs = _get(cfg, "scheduler.warmup_epochs"), _get(cfg, "trainer.max_epochs")
    if app != "train" or not isinstance(warmup, (int, float)) or not isinstance(epochs, int):
        return []
    if 0 <= warmup < epochs:
        return []
    return [f"scheduler.warmup_epochs={warmup} must lie in [0, trainer.max_epochs={epochs}): the cosine starts "
            f"after the warm-up; give fewer warm-up epochs or more trainer.max_epochs"]


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
            "channels", "conv", "block", "num_frames"}
        open_ = any(p.kind == p.VAR_KEYWORD for p in params)
    if spec.name == "nl":
        known.add("blocks")
    if open_:
        return []
    return [unknown_key(f"model.temporal.{k}", str(k), known, owner=f"model/temporal={spec.name} takes")
            for k in temporal.keys() if k != "name" and k not in known]


def rule_positions_backbone(cfg: DictConfig, app: str) -> list[str]:
    """ResNet positions (a-d) and model.stages are for CNNs; ViT positions and model.blocks for timm ViTs; a
    module is defined on the backbones its spec names."""
    backbone, position, blocks = _get(cfg, "model.backbone"), _get(cfg, "model.position"), _get(cfg, "model.blocks")
    try:
        vit = backbone_family(backbone) in VIT_FAMILIES
    except (ValueError, AttributeError):
        return []  # an unknown backbone: its own check says so
    given = [position] if isinstance(position, str) else list(position) if position is not None else []
    out = []
    wrong = [p for p in given if p in (POSITIONS if vit else VIT_POSITIONS)]
    if wrong:
        kind, other = ("ResNet block", VIT_POSITIONS) if vit else ("ViT block", POSITIONS)
        out.append(f"model.position={show(position)}: {wrong} are {kind} positions, not defined on "
                   f"model.backbone={backbone}; choose from {list(other)} (or null: the module's own place)")
    elif not vit and len(given) > 1:
        out.append(f"model.position={show(position)}: a CNN block takes one position, one of {list(POSITIONS)}")
    if blocks is not None and not vit:
        out.append(f"model.blocks={show(blocks)} picks ViT blocks; model.backbone={backbone} is a CNN: set "
                   "model.blocks=null and choose model.stages")
    name = _get(cfg, "model.temporal.name")
    spec = TEMPORAL.get(name) if isinstance(name, str) else None
    if spec is not None and not (spec.placement in ("in_block", "replace_block", "none") if vit else spec.cnn):
        fix = "a CNN backbone (model/arch=resnet50, ...)" if vit else \
            "a timm ViT (model/arch=vit_b16_clip, ...; on CPU with +preset=synthetic: +model/arch=vit_tiny)"
        out.append(f"model/temporal={name} is not defined on model.backbone={backbone}: use {fix}")
    return out


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
    rule_something_to_do, rule_epochs, rule_warmup, rule_monitor_mode, rule_crop_fits, rule_temporal_options,
    rule_positions_backbone, rule_paths, rule_tracking_stores, rule_clip_length, rule_diagnose_frames,
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
        if found := override_problems(cfg):
            raise ConfigError(report(found))
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
    given = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in schema.model_fields}
    errors = problems(schema, given, name=lambda key: key if key in POSITIONAL else "--" + key.replace("_", "-"))
    for flag in ("out", "page"):
        value = getattr(args, flag, None)
        if value is not None and not _writable(Path(value).parent):
            errors.append(f"--{flag} {value} cannot be written{_under_file_text(Path(value))}: give a path in a "
                          "writable directory")
    if app == "ensemble" and args.weights is not None and len(args.weights) != len(args.scores):
        errors.append(f"--weights has {len(args.weights)} values for {len(args.scores)} score files: give one "
                      "weight per file")
    if errors:
        raise ConfigError(report(errors, "arguments"))
