"""The field machinery of the config schema: a dataclass per config node, ``spec(...)`` per field, and
``check_node`` that compares a composed node with its dataclass.

The yaml files stay the source of the values (others own them and their shape must not change); the
dataclasses only describe what a value may be. Every problem becomes one line that names the full key,
the value, what it must be and, where there is one, the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def spec(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
         choices: typing.Sequence | None = None, check: Callable[[Any], str | None] | None = None,
         give: str | None = None, why: str | None = None, nonempty: bool = False) -> Any:
    """A schema field: ranges and choices apply to a scalar or to every item of a list; ``check(value)``
    returns what is wrong (or None). The fix shown: "give KEY=<give>", with ``why`` in brackets."""
    meta = dict(ge=ge, gt=gt, le=le, lt=lt, choices=None if choices is None else tuple(choices), check=check,
                give=give, why=why, nonempty=nonempty)
    return dataclasses.field(default=None, metadata=meta)


class Missing:
    """The value of a ``???`` key (OmegaConf.is_missing)."""


def read(node: DictConfig, key: str, full: str, errors: list[str]) -> Any:
    """The resolved value of ``node[key]``; ``Missing`` for ``???``; an unresolvable one is reported."""
    if OmegaConf.is_missing(node, key):
        return Missing
    try:
        return node[key]
    except OmegaConfBaseException as e:
        message = str(e).split("\n")[0]
        if "HydraConfig was not set" in message and not HydraConfig.initialized():
            return Missing  # Hydra's runtime values (the output dir) exist only in a Hydra run: library use
        # a resolver's own refusal (tanet.required) is already the message to give
        own = "ConfigError raised while resolving interpolation: "
        errors.append(message.removeprefix(own) if message.startswith(own)
                      else f"{full}: cannot be resolved: {message}")
        return Missing


# ------------------------------------------------------------------------------------------------
# Types


def _args(tp) -> tuple:
    return typing.get_args(tp)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def conforms(value: Any, tp) -> bool:
    if tp is Any:
        return True
    if _is_union(tp):
        return any(conforms(value, a) for a in _args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    origin = typing.get_origin(tp)
    if origin is list:
        return isinstance(value, (list, tuple, ListConfig)) and all(conforms(v, _args(tp)[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, (dict, DictConfig)):
            return False
        kt, vt = _args(tp) or (Any, Any)
        return all(conforms(k, kt) and conforms(v, vt) for k, v in value.items())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, DictConfig))
    raise TypeError(f"schema type {tp!r} is not handled")


def describe(tp) -> str:
    """'an integer', 'a number or null', 'a list of strings'..."""
    if tp is Any:
        return "any value"
    if _is_union(tp):
        parts = [describe(a) for a in _args(tp) if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return f"{text} or null" if type(None) in _args(tp) else text
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is list:
        if _args(tp)[0] is Any:
            return "a list"
        return f"a list of {describe(_args(tp)[0]).removeprefix('an ').removeprefix('a ')}s"
    if typing.get_origin(tp) is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _range_text(meta: Mapping) -> str:
    ops = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    bounds = [f"{op} {meta[k]}" for k, op in ops if meta[k] is not None]
    return " and ".join(bounds)


def _in_range(value, meta: Mapping) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True  # the type check has spoken
    return ((meta["ge"] is None or value >= meta["ge"]) and (meta["gt"] is None or value > meta["gt"])
            and (meta["le"] is None or value <= meta["le"]) and (meta["lt"] is None or value < meta["lt"]))


def finite(value) -> bool:
    """False for inf, -inf and nan (YAML's .inf, and 1e400, which overflows to inf); True for any other value."""
    return not isinstance(value, float) or math.isfinite(value)


def not_finite(full: str, value) -> str:
    return (f"{full}={show(value)} is not a finite number (1e400 overflows to inf): give a finite value "
            f"({full}=NUMBER)")


def non_finite_values(node: Any, prefix: str, errors: list[str]) -> None:
    """Every inf or nan anywhere under ``node``, typed field or not (an open group's other arguments, a
    callback's threshold): no value of a config means "infinitely", and nan is never a setting. A value
    that cannot be resolved is skipped (the per-key checks name it)."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            value = read(node, key, f"{prefix}{key}", [])
            if value is not Missing:
                non_finite_values(value, f"{prefix}{key}.", errors)
    elif isinstance(node, ListConfig):
        try:
            items = list(node)
        except OmegaConfBaseException:
            return
        if not all(map(finite, items)):
            errors.append(not_finite(prefix[:-1], node))
        for i, item in enumerate(items):
            if isinstance(item, (DictConfig, ListConfig)):
                non_finite_values(item, f"{prefix}{i}.", errors)
    elif not finite(node):
        errors.append(not_finite(prefix[:-1], node))


def show(value) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    return repr(value)


# ------------------------------------------------------------------------------------------------
# Nodes


def unknown_key(full: str, key: str, known: typing.Iterable[str], owner: str = "") -> str:
    """'trainer.max_epoch: unknown key; did you mean trainer.max_epochs? (or remove it)'."""
    known = sorted(k for k in known if not k.startswith("_"))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    prefix = full.rsplit(".", 1)[0] + "." if "." in full else ""
    if close:
        return f"{full}: unknown key; did you mean {prefix}{close[0]}? (or remove it)"
    return f"{full}: unknown key (remove it); {owner or 'the keys are'} {known}"


def check_node(node: DictConfig, schema: type, prefix: str, errors: list[str], closed: bool = True) -> None:
    """Compare ``node`` with the dataclass ``schema``: unknown keys (when closed), ``???``, types,
    ranges, choices, and nested dataclasses (open ones say ``OPEN = True``). Keys the node does not have
    are fine (the code's defaults)."""
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node.keys():
        if closed and key not in fields and not str(key).startswith("_"):
            errors.append(unknown_key(f"{prefix}{key}", str(key), fields))
    for name, f in fields.items():
        if name not in node.keys():  # `in` is False for a ??? value
            continue
        full = f"{prefix}{name}"
        value = read(node, name, full, errors)
        if value is Missing:
            if OmegaConf.is_missing(node, name):
                why = f" ({f.metadata['why']})" if f.metadata.get("why") else ""
                errors.append(f"{full} is required (it is ??? in the config): give {full}="
                              f"{f.metadata.get('give') or 'VALUE'}{why}")
            continue
        check_value(value, hints[name], f.metadata, full, errors)
        if dataclasses.is_dataclass(hints[name]) and isinstance(value, DictConfig):
            check_node(value, hints[name], f"{full}.", errors, closed=not getattr(hints[name], "OPEN", False))


def check_value(value, tp, meta: Mapping, full: str, errors: list[str]) -> None:
    give = f" ({meta['why']})" if meta.get("why") else ""
    give += f"; give {full}={meta['give']}" if meta.get("give") else ""
    if not conforms(value, tp):
        rng = _range_text(meta)
        errors.append(f"{full}={show(value)} must be {describe(tp)}{' ' + rng if rng else ''}{give}")
        return
    if value is None:
        return
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if meta.get("nonempty") and not items:
        errors.append(f"{full}={show(value)} must not be empty{give}")
    if any(not finite(item) for item in items):
        errors.append(not_finite(full, value))
        return
    for item in items:
        if not _in_range(item, meta):
            what = ": every item" if isinstance(value, (list, tuple, ListConfig)) else ""
            errors.append(f"{full}={show(value)}{what} must be {_range_text(meta)}{give}")
            return
        if meta.get("choices") is not None and item not in meta["choices"]:
            errors.append(f"{full}={show(value)} must be one of {list(meta['choices'])}{give}")
            return
    if meta.get("check") is not None:
        problem = meta["check"](value)
        if problem:
            errors.append(f"{full}={show(value)}: {problem}")


# ------------------------------------------------------------------------------------------------
# Instantiated nodes: the keys a `_target_` accepts, read off its signature


def target_params(target: str) -> tuple[set[str], bool] | None:
    """(parameter names, takes **kwargs) of a `_target_`, or None when it cannot be imported."""
    try:
        obj = get_method(target)  # classes too: hydra's locate
    except Exception:  # an optional dependency missing, or a typo: reported by the caller
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return set(), True
    params = sig.parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_target_keys(node: DictConfig, prefix: str, errors: list[str]) -> None:
    """Every key of an instantiated node must be an argument of its `_target_` (unless it takes **kwargs)."""
    target = node.get("_target_") if "_target_" in node and not OmegaConf.is_missing(node, "_target_") else None
    if not isinstance(target, str):
        return
    found = target_params(target)
    if found is None:
        errors.append(f"{prefix}_target_={target!r} cannot be imported: check the spelling (or install the "
                      "package it comes from)")
        return
    names, open_ = found
    if open_:
        return
    for key in node.keys():
        if not str(key).startswith("_") and key not in names:
            errors.append(unknown_key(f"{prefix}{key}", str(key), names))
