"""Values from YAML files and `--set KEY=VALUE` into typed dataclasses: merging, coercion, building.

The one place where an untyped value (a YAML scalar, a command-line string) meets a field's annotation;
a value that does not fit is a UserError naming the field.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


def merge(base: dict, update: dict) -> dict:
    """Deep-merge update into a copy of base (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise a UserError naming the field."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:  # the first type the value converts to (int | str: "3" -> 3, "cat" -> "cat")
            try:
                return coerce(value, option, where)
            except UserError:
                continue
        return coerce(value, inner[-1], where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"config: '{where}' must be a mapping, got {value!r}")
        return build(hint, value, where)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config: '{where}' must be a list, got {value!r}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config: '{where}' must be a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if hint is Any:
        return value
    try:
        return _scalar(value, hint, where)
    except (TypeError, ValueError):
        raise UserError(f"config: '{where}' must be {hint.__name__}, got {value!r}") from None


def _scalar(value: Any, hint: Any, where: str) -> Any:
    """bool, int, float or str from a YAML/CLI value (ValueError or TypeError where it is none of them)."""
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return bool(value)
    if hint is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if hint is float:
        number = float(value)
        if not math.isfinite(number):
            raise UserError(f"config: '{where}' must be a finite number, got {value!r} (give a finite value)")
        return number
    if hint is str:
        return str(value)
    return value


def build(cls: type, values: dict, where: str = "") -> Any:
    """An instance of the dataclass cls from a mapping (unknown keys and wrong types are UserErrors)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise UserError(f"config: unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def load_yaml(yaml_path: str | Path | None) -> dict[str, Any]:
    """The mapping in a YAML config file ({} for None); a missing or malformed file is a UserError."""
    if yaml_path is None:
        return {}
    path = Path(yaml_path)
    if not path.is_file():
        raise UserError(f"config file not found: {path} (pass an existing YAML file to --config)")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return values


def nest(path: str, value: Any) -> dict[str, Any]:
    """{'a': {'b': value}} for 'a.b'."""
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_dotted(assignments: list[str]) -> dict[str, Any]:
    """Turn ['unlearn.lr=5e-4', 'data.forget_class=2'] into a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got '{item}' (for example --set unlearn.lr=5e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out = merge(out, nest(key.strip(), value))
    return out
