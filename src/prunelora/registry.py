"""Everything prunelora looks up by name, per task: one registry class for surgeries, objectives and methods.

A task is what a model does with its inputs: `image-classification` (a classifier's logits) or `causal-lm` (a
language model's next tokens). Each registry entry belongs to one task, so `retain` or `ga` can mean the
image objective or the language-model objective without a second registry: `OBJECTIVES.get("npo",
CAUSAL_LM)`. Registering is one call that checks the name and binds the entry (PEFT's
`register_peft_method` is the model); the command line, the tables and the docs list whatever is registered.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import UserError

IMAGE = "image-classification"
CAUSAL_LM = "causal-lm"
TASKS = (IMAGE, CAUSAL_LM)

T = TypeVar("T")
NAME = re.compile(r"[a-z0-9][a-z0-9+\-_.]*")  # no "@" (the grid's separator), no "," (lists), no spaces


def check_task(task: str) -> str:
    """`task` when it is one prunelora knows; a UserError naming the choices otherwise."""
    if task not in TASKS:
        raise UserError(f"unknown task '{task}' (choose from: {', '.join(TASKS)})")
    return task


class Registry(Generic[T]):
    """name -> entry, per task, in registration order (the order of tables and of --help)."""

    def __init__(self, kind: str, name_of: Callable[[T], str] = lambda entry: entry.name) -> None:
        self.kind = kind  # "surgery", "objective", "method": how errors name an entry
        self._name_of = name_of
        self._entries: dict[str, dict[str, T]] = {task: {} for task in TASKS}

    def register(self, entry: T, *, task: str, replace: bool = False) -> T:
        """Add `entry` to `task`'s registry; its name must be new there (unless `replace`) and well formed."""
        name = self._name_of(entry)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"a {self.kind}'s name must match {NAME.pattern} (lowercase, no '@', ',' or spaces): "
                             f"{name!r}")
        entries = self._entries[check_task(task)]
        if name in entries and not replace and entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered for {task}")
        entries[name] = entry
        return entry

    def unregister(self, name: str, *, task: str) -> None:
        self._entries[check_task(task)].pop(name, None)

    def of(self, task: str) -> dict[str, T]:
        """The task's entries by name (a copy: register through `register`)."""
        return dict(self._entries[check_task(task)])

    def names(self, task: str) -> list[str]:
        return list(self._entries[check_task(task)])

    def has(self, name: str, task: str) -> bool:
        return name in self._entries[check_task(task)]

    def get(self, name: str, task: str) -> T:
        """The entry, or a UserError listing the task's names."""
        entries = self._entries[check_task(task)]
        if name not in entries:
            raise UserError(f"unknown {self.kind} '{name}' (choose from: {', '.join(entries)})")
        return entries[name]

    def snapshot(self) -> dict[str, dict[str, T]]:
        """Every task's entries (a copy), for `restore` (tests that register an entry for a while)."""
        return {task: dict(entries) for task, entries in self._entries.items()}

    def restore(self, saved: dict[str, dict[str, T]]) -> None:
        self._entries = {task: dict(entries) for task, entries in saved.items()}
