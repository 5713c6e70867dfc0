"""A method: a named point of surgery (methods/surgery.py) x objective (objectives/), what the registry holds.

It sits above both: the surgeries know the shared context (methods/base.py), and a method knows its surgery.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..objectives import Objective, get_objective
from ..registry import IMAGE
from .base import MethodContext, Prepared, objective_args
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
    task: str = IMAGE  # the task whose surgeries and objectives it combines

    def _surgery(self) -> Surgery:
        return get_surgery(self.surgery, self.task)

    def objective_class(self) -> type[Objective]:
        return get_objective(self.objective, self.task)

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
        return self.objective_class().uses_forget

    def check(self, method_args: dict[str, dict[str, Any]]) -> None:
        """Refuse unknown surgery, objective or settings before anything runs."""
        self._surgery()
        objective_args(self.objective_class(), self.name, method_args)

    def objective_for(self, original: nn.Module | None, method_args: dict[str, dict[str, Any]]) -> Objective:
        """The objective of a run, with its settings: its defaults < method_args[objective] < method_args[method]."""
        cls = self.objective_class()
        return cls(objective_args(cls, self.name, method_args), original=original)

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        """The surgery applied to a copy of `original`, the objective built, and the optimiser settings: the
        objective's recipe over the task's (ctx.optim_settings), unless the surgery set its own (Retrain's)."""
        prepared = self._surgery().apply(original, ctx)
        prepared.objective = self.objective_for(original, ctx.method_args)
        if prepared.optim is None:
            prepared.optim = ctx.optim_settings(prepared.objective.args, self)
        return prepared
