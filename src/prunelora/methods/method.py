"""A method: a named point of surgery (methods/surgery.py) x objective (objectives/), what the registry holds.

It sits above both: the surgeries know the shared context (methods/base.py), and a method knows its surgery.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..objectives import get_objective
from .base import MethodContext, Prepared, objective_args, recipe_settings
from .surgery import Surgery, get_surgery


@dataclass(frozen=True)
class Method:
    """A named point of surgery x objective, with what tables and checks need to know about it."""

    name: str
    label: str  # in tables and the report
    surgery: str  # a SURGERIES name
    objective: str  # an OBJECTIVES name
    exact: bool = False  # True for Retrain: evaluated once, at the end of its own recipe
    class_only: bool = False  # only for class-wise requests (it needs the forget classes)
    paper: bool = False  # one of the paper's paradigms (the default --methods)

    def _surgery(self) -> Surgery:
        return get_surgery(self.surgery)

    # What the method does to the layer plan (plan descriptions and checks read these, never a list of names):
    @property
    def prunes(self) -> bool:
        return self._surgery().prunes

    @property
    def adapts(self) -> bool:
        return self._surgery().adapts

    @property
    def trains_all(self) -> bool:
        return self._surgery().trains_all

    @property
    def reinitializes(self) -> bool:
        return self._surgery().reinitializes

    @property
    def uses_forget(self) -> bool:
        return get_objective(self.objective).uses_forget

    def check(self, method_args: dict[str, dict[str, Any]]) -> None:
        """Refuse unknown surgery, objective or settings before anything runs."""
        self._surgery()
        objective_args(get_objective(self.objective), self.name, method_args)

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        prepared = self._surgery().apply(original, ctx)
        objective = get_objective(self.objective)
        args = objective_args(objective, self.name, ctx.method_args)
        if prepared.optim is None:
            prepared.optim = recipe_settings(args, ctx.unlearn, ctx.flip)
        prepared.objective = objective(args, original=original)
        return prepared
