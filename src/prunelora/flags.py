"""Command-line options generated from dataclass field metadata (config/schema.py describes the keys).

A field with a ``flag`` becomes an option of each command in its ``commands``; the parsed value lands
under the field's dotted path (``given`` turns a namespace into the nested dict that config.resolve
takes). The help shows the field's own default, so it can never disagree with the dataclass.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import PRESETS, RunConfig, merge, nest

ROOT = "run"  # help section of a root field without its own group
CHECKPOINT_COMMANDS = ("unlearn", "evaluate", "plan")  # commands that take the data's settings from a checkpoint
ONE = ":one"  # dest suffix of a `single` flag (--seed for seeds)


@dataclass(frozen=True)
class Option:
    """One field that has a flag: where it lives, its type and default, and its metadata."""

    path: str  # dotted, from the root dataclass: "data.forget_class"
    hint: Any  # the field's annotation, resolved
    default: Any  # the dataclass default (a factory's value)
    group: str  # the help section ("" for the parser itself)
    meta: Mapping[str, Any]

    @property
    def flag(self) -> str:
        return self.meta["flag"]

    def takes(self, command: str) -> bool:
        return command in self.meta.get("commands", ())


def options(cls: type, prefix: str = "", group: str = ROOT) -> Iterator[Option]:
    """Every field of cls (and of its nested dataclasses) that has a flag, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from options(hints[f.name], f"{path}.", f.metadata.get("group", f.name))
        elif "flag" in f.metadata:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            yield Option(path, hints[f.name], default, f.metadata.get("group", group), f.metadata)


def shown(value: Any) -> str:
    """A default as a user types it: lists comma-separated, booleans on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _lookup(values: Mapping[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(values, Mapping) or key not in values:
            return dataclasses.MISSING
        values = values[key]
    return values


def default_text(option: Option, command: str = "", root: type = RunConfig) -> str:
    """The default as the help states it: the field's (what None means, where it says), the default preset's
    value where that preset changes it, or the checkpoint's on commands that read one."""
    if option.meta.get("checkpoint") and command in CHECKPOINT_COMMANDS:
        return "the checkpoint's"
    value = option.default
    text = option.meta["none"] if value is None and "none" in option.meta else shown(value)
    if isinstance(value, bool):
        text = f"{option.path} {text}"  # --no-download: the field it turns off, and how it starts
    if root is RunConfig:
        preset = _lookup(PRESETS[RunConfig.preset], option.path)
        if preset is not dataclasses.MISSING and preset != value:
            text += f"; the {RunConfig.preset} preset's {shown(preset)}"
    return text


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def class_or_name(text: str) -> int | str:
    """A class index ("3") or a class name ("cat")."""
    return int(text) if text.strip().lstrip("-").isdigit() else text.strip()


def names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _classes(text: str) -> list[int | str]:
    return [class_or_name(v) for v in text.split(",") if v.strip()]


_SCALARS: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str, int | str: class_or_name}
_LISTS: dict[Any, Callable[[str], Any]] = {int: _ints, float: _floats, str: names, int | str: _classes}


def _without_none(hint: Any) -> Any:
    """X for X | None (a flag given is never None)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


def converter(hint: Any) -> Callable[[str], Any]:
    """The argparse type of a field's annotation (comma-separated lists, an index or a name, ...)."""
    hint = _without_none(hint)
    table = _LISTS if typing.get_origin(hint) is list else _SCALARS
    key = typing.get_args(hint)[0] if table is _LISTS else hint
    if key not in table:
        raise TypeError(f"no command-line form for {hint}: give the field no flag (set it with --set) or add one")
    return table[key]


def _help(option: Option, command: str, root: type, choices: Mapping[str, Sequence[str]]) -> str:
    listed = option.meta.get("choices")
    if isinstance(listed, str):
        listed = choices.get(listed)
    text = option.meta.get("help", "")
    if listed and isinstance(option.meta.get("choices"), str):
        text = f"{' | '.join(listed)}: {text}" if text else " | ".join(listed)
    text = f"{text} (default: {default_text(option, command, root)})"
    return text.replace("%", "%%")  # argparse formats help with %


def _metavar(flag: str) -> str:
    """--data-root -> DATA_ROOT (argparse's own would show the dotted destination)."""
    return flag.lstrip("-").upper().replace("-", "_")


def add_options(parser: argparse.ArgumentParser, command: str, *, root: type = RunConfig, name: str = "config",
                choices: Mapping[str, Sequence[str]] | None = None,
                groups: dict[str, argparse._ArgumentGroup] | None = None) -> None:
    """Add to parser the flags of root's fields that command takes; each stores under "{name}:{path}".

    choices: registry name -> the names it holds (listed in the help; the registries refuse unknown ones
    with their own message). groups: the help sections already made, by title (created here when missing).
    """
    groups = {} if groups is None else groups
    for option in options(root):
        if not option.takes(command):
            continue
        if option.group == "":
            target: Any = parser
        else:
            target = groups.get(option.group) or groups.setdefault(option.group,
                                                                   parser.add_argument_group(option.group))
        dest = f"{name}:{option.path}"
        text = _help(option, command, root, choices or {})
        if _without_none(option.hint) is bool:
            value = not option.flag.startswith("--no-")
            target.add_argument(option.flag, dest=dest, action="store_const", const=value, default=None, help=text)
            continue
        metavar = option.meta.get("metavar") or _metavar(option.flag)
        if "single" in option.meta:
            flag, what = option.meta["single"]
            element = typing.get_args(_without_none(option.hint))[0]
            target.add_argument(flag, dest=dest + ONE, type=converter(element), metavar=_metavar(flag),
                                help=f"{what} (default: {default_text(option, command, root)})".replace("%", "%%"))
        target.add_argument(option.flag, dest=dest, type=converter(option.hint), metavar=metavar, help=text)


def given(args: argparse.Namespace, name: str = "config") -> dict[str, Any]:
    """The flags of `name` that were given, as a nested dict by dotted path (a list flag wins over its
    `single` form: --seeds over --seed)."""
    values = vars(args)
    out: dict[str, Any] = {}
    prefix = f"{name}:"
    for dest, value in values.items():
        if not dest.startswith(prefix) or value is None:
            continue
        path = dest[len(prefix):]
        if path.endswith(ONE):
            path = path[:-len(ONE)]
            if values.get(prefix + path) is not None:
                continue
            value = [value]
        out = merge(out, nest(path, value))
    return out
