"""Config dataclasses from YAML files, typed field by field, every error naming file, line and field.

PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a string and ``nan`` is a string too; a nested
section may come as a scalar (``optim: 5``) and a file may hold a list. :func:`read_yaml` parses a file
and keeps the line of every key (PyYAML node marks); :func:`build` makes a dataclass from the mapping,
converting each value by its field's type hint (:func:`coerce`: ``"1e-4"`` -> ``1e-4`` for a float,
``2.0`` -> ``2`` for an int, ``"true"`` -> ``True``; ``inf`` / ``nan`` refused) and reporting every
problem as one line ``file:line: field ...`` (unknown keys, wrong types, and the dataclass's own
checks when they raise :class:`FieldError` or name the field).
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path
from typing import Any, Literal

from .cli import unwrap_optional

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class FieldError(ValueError):
    """A bad value of one field; ``field`` is its dotted name (``optim.lr``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_finite(obj, prefix: str = "") -> None:
    """FieldError for a float field (or a float inside a tuple field) of dataclass ``obj`` that is NaN/inf."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        vals = v if isinstance(v, (tuple, list)) else (v,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in vals):
            raise FieldError(f"{prefix}{f.name}", f"{prefix}{f.name} must be a finite number, got {v!r}")


def coerce(value: Any, hint, name: str) -> Any:
    """``value`` (as YAML gave it) converted to the type ``hint`` of field ``name``; FieldError if it cannot be."""
    optional, hint = unwrap_optional(hint)
    if value is None:
        if optional:
            return None
        raise FieldError(name, f"{name} must not be null")
    origin = typing.get_origin(hint)
    bad = FieldError(name, f"{name} must be {_describe(hint)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise FieldError(name, f"{name} must be one of {list(choices)}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE + FALSE:
            return value.lower() in TRUE
        raise bad
    if hint in (int, float):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                value = int(value) if hint is int and re.fullmatch(r"\s*[-+]?\d+\s*", value) else float(value)
            except ValueError:
                raise bad from None
        if not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError(name, f"{name} must be a finite number, got {value!r}")
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise bad
            return int(value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and Ellipsis not in typing.get_args(hint) and len(value) != len(args):
            raise FieldError(name, f"{name} must be {len(args)} values, got {len(value)}: {value!r}")
        return origin(coerce(v, args[0] if len(args) == 1 else args[i], f"{name}[{i}]") for i, v in enumerate(value))
    return value


def _describe(hint) -> str:
    if typing.get_origin(hint) in (tuple, list):
        return f"a list of {len(typing.get_args(hint))} numbers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def read_yaml(path: str | Path) -> tuple[dict, dict[str, int]]:
    """(the mapping of a YAML file, {dotted key: 1-based line}); ValueError ``file:line: ...`` for a
    missing file, invalid YAML, a top level that is not a mapping, or a key given twice."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config: file {str(p)!r} not found")
    text = p.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise ValueError(f"{where}: invalid YAML: {what}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}:1: a config file must be a mapping of fields (name: value), got a "
                         f"{type(data).__name__}")
    lines: dict[str, int] = {}

    def walk(n, prefix: str) -> None:
        for k, v in n.value:
            name = f"{prefix}{k.value}"
            if name in lines:
                raise ValueError(f"{p}:{k.start_mark.line + 1}: {name} is given twice (also on line {lines[name]})")
            lines[name] = k.start_mark.line + 1
            if isinstance(v, yaml.MappingNode):
                walk(v, f"{name}.")

    walk(node, "")
    return data, lines


class _Where:
    """Turns an error about a dotted field into ``file:line: message``."""

    def __init__(self, file: str | None, lines: dict[str, int] | None):
        self.file, self.lines = file, lines or {}

    def __call__(self, field: str | None, message: str) -> ValueError:
        if self.file is None:
            return ValueError(message)
        while field and field not in self.lines and "." in field:
            field = field.rsplit(".", 1)[0]
        line = self.lines.get(field) if field else None
        return ValueError(f"{self.file}:{line}: {message}" if line else f"{self.file}: {message}")

    def mentioned(self, message: str, prefix: str) -> str | None:
        """The first key of this file (under ``prefix``) that ``message`` names."""
        for name in sorted(self.lines, key=lambda k: self.lines[k]):
            if name.startswith(prefix) and re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message):
                return name
        for name in sorted(self.lines, key=lambda k: self.lines[k]):  # a short name (``steps``) in a section
            short = name.rsplit(".", 1)[-1]
            if name.startswith(prefix) and re.search(rf"(?<![\w.]){re.escape(short)}(?![\w])", message):
                return name
        return None


def build(cls, data: Any, *, prefix: str = "", file: str | None = None, lines: dict[str, int] | None = None):
    """``cls`` from a YAML-like mapping: nested dataclass fields from nested mappings, every value coerced
    by its type hint, unknown keys refused; errors name ``file:line`` (when ``file`` is given) and field."""
    where = _Where(file, lines)
    section = prefix[:-1] or "config"
    if not isinstance(data, dict):
        raise where(prefix[:-1] or None, f"{section} must be a mapping of {section} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise where(f"{prefix}{unknown[0]}", f"unknown key(s) {unknown} in {section}; valid keys: {sorted(names)}")
    kw = {}
    for name, value in data.items():
        dotted, hint = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            kw[name] = value if isinstance(value, hint) else build(hint, value, prefix=f"{dotted}.", file=file,
                                                                   lines=lines)
            continue
        try:
            kw[name] = coerce(value, hint, dotted)
        except FieldError as e:
            raise where(e.field.split("[")[0], str(e)) from None
    try:
        return cls(**kw)
    except FieldError as e:
        raise where(e.field, str(e)) from None
    except (ValueError, TypeError) as e:
        if file is None:
            raise
        raise where(where.mentioned(str(e), prefix) or (prefix[:-1] or None), str(e)) from None
