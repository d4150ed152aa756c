"""Composed config nodes as the values a model checks: resolved, ``???`` keys named, unresolvable ones named,
every inf and nan found (typed key or not), and an instantiated node's keys checked against its `_target_`.

What a value may be is the models' (groups.py, and the constructors' signatures through base/typed.py);
this module only reads OmegaConf nodes.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel

from ...base.typed import finite, fix_of, model_in, not_finite, unknown_key


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


def values(node: DictConfig, model: type[BaseModel] | None, prefix: str, errors: list[str]) -> dict:
    """``node`` as plain values for ``model``: a ``???`` key of the model is reported as required (with its
    fix) and left out, as is a key that cannot be resolved; keys the node does not have are the code's
    defaults. Keys that start with ``_`` (`_target_`) are Hydra's."""
    out = {}
    for key in node.keys():
        full = f"{prefix}{key}"
        if str(key).startswith("_"):
            continue
        field = model.model_fields.get(key) if model is not None else None
        value = read(node, key, full, errors)
        if value is Missing:
            if OmegaConf.is_missing(node, key) and field is not None:
                fix = fix_of(field)
                errors.append(f"{full} is required (it is ??? in the config): give {full}={fix.give or 'VALUE'}"
                              + (f" ({fix.why})" if fix.why else ""))
            continue
        if isinstance(value, DictConfig):
            value = values(value, model_in(field) if field is not None else None, f"{full}.", errors)
        elif isinstance(value, ListConfig):
            try:
                value = OmegaConf.to_container(value, resolve=True)
            except OmegaConfBaseException as e:
                errors.append(f"{full}: cannot be resolved: {str(e).splitlines()[0]}")
                continue
        out[key] = value
    return out


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
