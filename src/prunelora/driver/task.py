"""What a task is to the stage driver: the one protocol both image classification and causal LMs implement.

The driver (stages.py) owns everything that must behave the same on every task: the loop over seeds, models,
requests and methods, a stage's fingerprint and its verified reuse, the records beside every delivered model,
the run's warnings and the results files' claim on the output folder. A task owns what differs: its data and
requests (splits), how a model is measured, what a results row and a record's request say, the original's
row, and how the finished rows become the results files. Implementations: ImageTask (image_task.py) and
CausalLMTask (causal_lm.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

if TYPE_CHECKING:  # annotations only
    from ..methods import Method
    from .stages import Experiment
    from .subject import Outcome, Subject


class Task(Protocol):
    """The task-specific half of a run (see the module docstring)."""

    name: str  # the registry task: "image-classification" | "causal-lm"
    sequential: bool  # several requests, each applied to the model the previous one produced

    @property
    def request_count(self) -> int:
        """How many requests the run applies (1 unless sequential)."""

    def method(self, name: str) -> Method:
        """The task's method of that name (registered, or a grid point)."""

    def splits(self, seed: int, request: int = 1) -> Any:
        """The data after the first `request` requests, for `seed`."""

    def forget_size(self, seed: int, request: int) -> int:
        """How many samples the request newly forgets (a forget-aware method needs some)."""

    def stage_key(self, subject: Subject, method: str, seed: int, start_key: str, request: int) -> str:
        """The fingerprint of a stage: everything that decides its outputs."""

    def evidence_key(self) -> str:
        """What a finished stage's rows were measured with: another key re-measures its saved models."""

    def measure(self, subject: Subject, model: nn.Module, seed: int, request: int, method: str,
                epochs: int | None) -> dict[str, Any]:
        """Every figure of one model (the task's per-sample exports written on the way)."""

    def row(self, subject: Subject, outcome: Outcome, index: int, metrics: dict[str, Any], seed: int,
            request: int, fields: dict[str, Any]) -> dict[str, Any]:
        """One results row: the model, method and budget, the figures, the cost and the subject's fields."""

    def verdict(self, metrics: dict[str, Any], seed: int, request: int) -> tuple[str, list[str], dict[str, Any]]:
        """The verdict a record states without Retrain, its reasons and the thresholds it applied."""

    def record_facts(self, seed: int, request: int, start: nn.Module) -> dict[str, Any]:
        """What every budget's record of one stage shares: the request, the model before, configuration, machine."""

    def original_rows(self, subject: Subject, seed: int, model: nn.Module, meta: dict[str, Any],
                      request: int) -> list[dict[str, Any]]:
        """The original's rows at a request: what it still knows of everything forgotten so far."""

    def reevaluate(self, exp: Experiment, subject: Subject, rows: list[dict], seed: int,
                   request: int) -> list[dict]:
        """A finished stage's rows measured again from its saved models (new evidence settings)."""

    def finish(self, exp: Experiment, rows: list[dict], started: float, partial: bool = False) -> dict[str, Any]:
        """The derived columns (the gap to Retrain, verdicts, seed aggregates) and every results file."""

    def export_path(self, subject: Subject, method: str, epochs: int | None, seed: int, request: int) -> Path | None:
        """Where a model's per-sample outputs are written (logits, per-example measures), or None."""
