"""The model a run unlearns, as the stage driver sees it: a "subject".

The driver (stages.py) fingerprints, resumes, evaluates every budget and records; a subject knows
everything about its kind of model: how to build a fresh one (Retrain), how to run a method on it,
which module gives its logits, where and how its deliverables are saved, and how to load one back
(the next request of a sequence starts from it; a re-evaluation measures it). Implementations:
registry models (registry.py), the user's own models (user_run.py). The causal-LM task (lm/run.py) has its
own stages (its data, measures and deliverables are another task's) but keeps them by stage_store.py's rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from ..data import Splits
from ..runner import MethodRun, Snapshot


@dataclass
class Outcome:
    """A method's run on a subject: the shared MethodRun, and per snapshot what the subject adds about it."""

    run: MethodRun
    notes: list[dict[str, Any]] = field(default_factory=list)  # per snapshot (user models: history, forgotten)
    warnings: list[str] = field(default_factory=list)  # shown under the tables


@dataclass
class StagePlace:
    """Where a stage's deliverables live: seed<s>/models/<model>, and the request's part ("" or "r<k>")."""

    models: Path
    part: str = ""


@dataclass
class Delivery:
    """Everything a subject may write about one budget's model."""

    method: str
    run: MethodRun
    snapshot: Snapshot
    note: dict[str, Any]
    metrics: dict[str, Any]
    last: bool  # the run's final budget (adapters are kept for it alone)
    start: nn.Module  # the model the method started from
    splits: Splits
    seed: int
    request: int
    out: Path  # the run's folder (rows name files relative to it)


class Subject(Protocol):
    """What a stage needs of the model being unlearned (see the module docstring)."""

    name: str  # the model's label in rows, folders and logits files
    family: str  # the model family whose recipes Retrain and the methods use ("" when unknown)

    def fresh(self, splits: Splits, start: nn.Module) -> nn.Module:
        """A newly initialised model of the same kind (Retrain)."""

    def run(self, method: str, start: nn.Module, splits: Splits, seed: int, desc: str) -> Outcome:
        """The method on `start` (left untouched) for every budget of the run."""

    def evaluated(self, model: nn.Module) -> nn.Module:
        """The module whose outputs are the model's logits (what evaluation measures)."""

    def final(self, outcome: Outcome) -> nn.Module:
        """The last budget's model, as the next request's `start`."""

    def deliverable(self, place: StagePlace, method: str, epochs: int | None, last: bool) -> Path:
        """Where one budget's model is saved (a file or a folder)."""

    def save(self, path: Path, delivery: Delivery) -> dict[str, Any]:
        """Write one budget's deliverables at `path`; returns the fields it adds to the budget's row."""

    def load(self, path: Path) -> nn.Module:
        """A saved deliverable back, as `final` gives it."""

    def loader(self) -> dict[str, Any]:
        """How a deliverable is loaded back without the run (a record's model_after: kind, source, ...)."""
