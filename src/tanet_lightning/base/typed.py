"""Typed settings: the one statement of what a key may hold, shared by the code that takes it and the config
schema that checks it before any work.

A constructor states its keys' types and ranges in its own signature (or dataclass fields) with pydantic's
``Annotated[int, Field(ge=1)]``, ``Literal[...]`` and validators; ``model_of`` turns signatures and
dataclasses into one strict pydantic model (no coercion, no inf/nan, no unknown key), which the constructor
validates its arguments against and the config schema (config/schema) reuses as it is. ``problems`` renders
pydantic's errors, all at once, as the project's lines: the full key, the value, what it must be and the fix
(``Fix``), with the closest known key for an unknown one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union

from omegaconf import DictConfig, ListConfig
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from .errors import ConfigError

__all__ = ["OPEN", "STRICT", "Count", "Fix", "Nested", "Seed", "check", "check_arguments", "describe", "fix_of",
           "locate", "model_in", "model_of", "problems", "report", "settings_of", "show",
           "unknown_key", "validated"]

F = TypeVar("F", bound=Callable)

# what a config value may be: its own type (an int is a number, never a bool or a numeric string), finite
STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", arbitrary_types_allowed=True)
OPEN = ConfigDict(strict=True, allow_inf_nan=False, extra="allow", arbitrary_types_allowed=True)

Count = Annotated[int, Field(ge=1)]  # a size, a length, a number of things
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy's (and so Lightning's) seeding accepts


@dataclasses.dataclass(frozen=True)
class Fix:
    """``Annotated`` metadata of a key's fix: "give KEY=<give>", with ``why`` in brackets."""

    give: str | None = None
    why: str | None = None


@dataclasses.dataclass(frozen=True)
class Nested:
    """``Annotated`` metadata of a mapping parameter whose keys are another class's fields (``model_of`` checks
    them as that class's model): ``synthetic: Annotated[Mapping | None, Nested(SyntheticSpec)]``."""

    of: type


def check(problem: Callable[[Any], str | None]) -> AfterValidator:
    """A validator from a function that says what is wrong with a value (None: fine)."""

    def run(value):
        said = problem(value)
        if said:
            raise ValueError(said)
        return value

    return AfterValidator(run)


# ------------------------------------------------------------------------------------------------
# Models from signatures and dataclasses


def model_of(*sources: Callable | type, name: str | None = None, skip: Iterable[str] = (),
             **fields: Any) -> type[BaseModel]:
    """One strict model of the parameters of functions (``self`` and ``*args``/``**kwargs`` aside) and the
    fields of dataclasses, with their annotations as written (``Annotated`` metadata included).
    ``fields`` add or replace fields: a type, or ``(type, FieldInfo)``."""
    found: dict[str, Any] = {}
    for source in sources:
        hints = typing.get_type_hints(source, include_extras=True)
        if dataclasses.is_dataclass(source):
            names = [f.name for f in dataclasses.fields(source)]
        else:
            params = inspect.signature(source).parameters.values()
            names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
        for key in names:
            if key not in skip:
                found[key] = _nested(hints.get(key, Any))
    found.update(fields)
    spec = {k: v if isinstance(v, tuple) else (v, None) for k, v in found.items()}
    label = name or "".join(getattr(s, "__qualname__", "S").split(".")[0] for s in sources)
    return create_model(label, __config__=STRICT, **spec)


def _nested(tp):
    """``Annotated[X | None, Nested(C)]`` -> C's model or None; any other type as it is."""
    if typing.get_origin(tp) is Annotated:
        marks = [m for m in tp.__metadata__ if isinstance(m, Nested)]
        if marks:
            inner = model_of(marks[0].of)
            return inner | None if type(None) in _members(tp.__origin__) else inner
    return tp


def validated(prefix: str, *more: type) -> Callable[[F], F]:
    """Decorate a function (a constructor) so that the arguments it is given are checked against
    ``model_of(fn, *more)`` before it runs, all problems in one ConfigError (keys named ``prefix`` + name);
    ``**kwargs`` hold ``more``'s fields. ``settings_of(fn)`` is that model: the config schema's."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)
        kinds = {n: p.kind for n, p in signature.parameters.items()}

        @functools.wraps(fn)
        def run(*args, **kwargs):
            values = {}
            for key, value in signature.bind(*args, **kwargs).arguments.items():
                if kinds[key] == inspect.Parameter.VAR_KEYWORD:
                    values.update(value)
                elif key != "self" and kinds[key] != inspect.Parameter.VAR_POSITIONAL:
                    values[key] = value
            check_arguments(settings_of(run), values, prefix)
            return fn(*args, **kwargs)

        run.settings = functools.cache(lambda: model_of(fn, *more))  # built on first use: every name defined
        return run

    return wrap


def settings_of(obj: Callable) -> type[BaseModel]:
    """The model of a ``validated`` function, or of a class whose ``__init__`` is one."""
    return (obj.__init__ if isinstance(obj, type) else obj).settings()


def check_arguments(model: type[BaseModel], values: Mapping, prefix: str) -> None:
    """Raise one ConfigError naming every argument of ``values`` that ``model`` refuses."""
    if errors := problems(model, values, prefix):
        raise ConfigError(report(errors))


def report(errors: list[str], what: str = "config values") -> str:
    """One problem as it is; several as 'N config values cannot work:' and a line each (repeats dropped)."""
    errors = list(dict.fromkeys(errors))
    if len(errors) == 1:
        return errors[0]
    return f"{len(errors)} {what} cannot work:\n" + "\n".join(f"  {e}" for e in errors)


# ------------------------------------------------------------------------------------------------
# pydantic's errors as the project's lines


RANGES = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
# which of a field's errors is told, first first: a member of a union that took the value's type tells why
ORDER = ("value_error", "finite_number", "too_short", *RANGES, "literal_error")


def problems(model: type[BaseModel], values: Mapping, prefix: str = "",
             name: Callable[[str], str] | None = None) -> list[str]:
    """Every problem of ``values`` against ``model``, one line each; ``name`` turns a dotted key into what the
    user typed (a flag, say). Absent keys are fine: the code's defaults apply."""
    try:
        model.model_validate(_plain(values))
        return []
    except ValidationError as e:
        errors = e.errors()
    full = name or (lambda key: prefix + key)
    out, fields = [], {}
    for err in errors:
        if err["type"] == "missing":
            continue
        path, field, parent, rest = locate(model, err["loc"])
        if err["type"] == "extra_forbidden":
            known = parent.model_fields if parent is not None else {}
            out.append(unknown_key(full(".".join(map(str, path))), str(path[-1]), known))
        elif field is not None:
            fields.setdefault(tuple(path), (field, []))[1].append((rest, err))
    for path, (field, errs) in fields.items():
        out.append(_message(full(".".join(path)), _value(values, path), field, errs))
    return out


def locate(model: type[BaseModel], loc: Sequence) -> tuple[list, FieldInfo | None, type | None, tuple]:
    """(key path, the field, the model holding it, the rest of the location) of an error's ``loc``; for an
    unknown key, the path ends in it and the model is the one that does not know it."""
    path: list = []
    field, parent, current = None, None, model
    for i, key in enumerate(loc):
        if current is None:  # inside a field's value: a list index, a union member's tag
            return path, field, parent, tuple(loc[i:])
        if key not in current.model_fields:
            return [*path, key], field, current, tuple(loc[i + 1:])
        parent, field = current, current.model_fields[key]
        path.append(key)
        current = model_in(field)
    return path, field, parent, ()


def model_in(field: FieldInfo) -> type[BaseModel] | None:
    """The model a field's value is checked with (a nested group), if any."""
    return next((m for m in _members(field.annotation) if isinstance(m, type) and issubclass(m, BaseModel)), None)


def _message(key: str, value: Any, field: FieldInfo, errs: list[tuple[tuple, dict]]) -> str:
    tp, fix = _annotated(field), fix_of(field)
    give = (f" ({fix.why})" if fix.why else "") + (f"; give {key}={fix.give}" if fix.give else "")
    rank = {t: i for i, t in enumerate(ORDER)}
    rest, err = min(errs, key=lambda e: rank.get(e[1]["type"], len(ORDER)))
    kind = err["type"]
    if kind == "value_error":
        return f"{key}={show(value)}: {err['ctx']['error']}"
    if kind == "finite_number":
        return not_finite(key, value)
    if kind == "too_short":
        return f"{key}={show(value)} must not be empty{give}"
    if kind in RANGES:
        every = ": every item" if any(isinstance(r, int) for r in rest) else ""
        return f"{key}={show(value)}{every} must be {_range_text(tp)}{give}"
    if kind == "literal_error":
        return f"{key}={show(value)} must be one of {list(_choices(tp))}{give}"
    bounds = _range_text(tp)
    return f"{key}={show(value)} must be {describe(tp)}{' ' + bounds if bounds else ''}{give}"


def unknown_key(full: str, key: str, known: Iterable[str], owner: str = "") -> str:
    """'trainer.max_epoch: unknown key; did you mean trainer.max_epochs? (or remove it)'."""
    known = sorted(k for k in known if not k.startswith("_"))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    prefix = full.rsplit(".", 1)[0] + "." if "." in full else ""
    if close:
        return f"{full}: unknown key; did you mean {prefix}{close[0]}? (or remove it)"
    return f"{full}: unknown key (remove it); {owner or 'the keys are'} {known}"


def not_finite(full: str, value) -> str:
    return (f"{full}={show(value)} is not a finite number (1e400 overflows to inf): give a finite value "
            f"({full}=NUMBER)")


def finite(value) -> bool:
    """False for inf, -inf and nan (YAML's .inf, and 1e400, which overflows to inf); True for any other value."""
    return not isinstance(value, float) or math.isfinite(value)


def show(value) -> str:
    return repr(_plain(value))


# ------------------------------------------------------------------------------------------------
# Reading annotations: what a type is, in words; its bounds and choices


def _annotated(field: FieldInfo):
    """The field's annotation with the metadata pydantic took off it put back."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def _members(tp) -> tuple:
    if typing.get_origin(tp) is Annotated:
        return _members(tp.__origin__)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(m for a in typing.get_args(tp) for m in _members(a))
    return (tp,)


def _walk(tp):
    """``tp`` and every type inside it (union members, items, Annotated's inner type)."""
    yield tp
    inner = (tp.__origin__,) if typing.get_origin(tp) is Annotated else typing.get_args(tp)
    if typing.get_origin(tp) is not Literal:
        for a in inner:
            yield from _walk(a)


def fix_of(field: FieldInfo) -> Fix:
    return next((m for t in _walk(_annotated(field)) if typing.get_origin(t) is Annotated for m in t.__metadata__
                 if isinstance(m, Fix)), Fix())


def _range_text(tp) -> str:
    """'>= 0 and < 1': the first bounds found in the type (a scalar's, or its items')."""
    for t in _walk(tp):
        if typing.get_origin(t) is not Annotated:
            continue
        items = [m for meta in t.__metadata__ for m in (meta.metadata if isinstance(meta, FieldInfo) else [meta])]
        bounds = [f"{op} {getattr(m, k)}" for m in items for k, op in BOUNDS if hasattr(m, k)]
        if bounds:
            return " and ".join(bounds)
    return ""


BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _choices(tp) -> tuple:
    return next((typing.get_args(t) for t in _walk(tp) if typing.get_origin(t) is Literal), ())


WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
         Mapping: "a mapping", os.PathLike: "a path", type(None): "null"}


def describe(tp) -> str:
    """'an integer', 'a number or null', 'a list of strings'..."""
    if tp is Any:
        return "any value"
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return describe(tp.__origin__)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        text = " or ".join(dict.fromkeys(describe(a) for a in args if a is not type(None)))
        return f"{text} or null" if type(None) in args else text
    if origin is Literal:
        return " or ".join(dict.fromkeys(describe(type(v)) for v in typing.get_args(tp)))
    if tp in WORDS:
        return WORDS[tp]
    if origin in (list, tuple, Sequence, typing.Sequence):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        return "a list" if item is Any else f"a list of {describe(item).removeprefix('an ').removeprefix('a ')}s"
    if origin in (dict, Mapping) or isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------------------------------------


def _plain(value):
    """OmegaConf containers (Hydra's instantiate passes them) and tuples as plain dicts and lists, the keys
    that start with ``_`` (``_target_``, ``_partial_``) aside: what a model validates."""
    if isinstance(value, (Mapping, DictConfig)):
        return {k: _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple, ListConfig)):
        return [_plain(v) for v in value]
    return value


def _value(values: Mapping, path: Sequence) -> Any:
    for key in path:
        values = values.get(key) if hasattr(values, "get") else None
    return values
