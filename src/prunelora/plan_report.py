"""What each method will do to a model, before anything runs: the layers it prunes, adapts and trains.

`prunelora.plan(model, images)` and `prunelora plan ...` print it; the plan a run used is saved
with its results. Which methods prune, adapt or train everything comes from the method registry.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .methods import METHODS, get_method
from .models import LayerPlan
from .registry import IMAGE


def _matching(model: nn.Module, pattern: str) -> list[tuple[str, int]]:
    regex = re.compile(pattern)
    return [(name, sum(p.numel() for p in m.parameters()))
            for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and regex.fullmatch(name)]


@dataclass
class PlanReport:
    """The plan, and per method the (layer, parameter count) pairs it prunes, adapts and trains in full."""

    plan: LayerPlan
    total_params: int
    methods: dict[str, dict[str, list[tuple[str, int]]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"plan": dataclasses.asdict(self.plan), "total_params": self.total_params,
                "methods": {m: {k: [list(v) for v in layers] for k, layers in parts.items()}
                            for m, parts in self.methods.items()}}

    def __str__(self) -> str:
        lines = [f"family {self.plan.family or '-'}, head {self.plan.head}, {self.total_params:,} parameters"]
        for method, parts in self.methods.items():
            lines.append(f"{method}:")
            for what, layers in parts.items():
                shown = ", ".join(f"{n} ({c:,})" for n, c in layers) if layers else "-"
                lines.append(f"  {what:7s} {shown}")
        return "\n".join(lines)


def describe_plan(model: nn.Module, plan: LayerPlan, methods: list[str] | None = None) -> PlanReport:
    """Which layers each method prunes, adapts and trains in full on this model."""
    total = sum(p.numel() for p in model.parameters())
    everything = [("all parameters", total)]
    report = PlanReport(plan, total)
    for name in methods or METHODS.names(IMAGE):
        method = get_method(name)
        parts: dict[str, list[tuple[str, int]]] = {}
        if method.reinitializes:
            parts["resets"] = everything
        if method.prunes:
            parts["prunes"] = _matching(model, plan.prune_layers)
        if method.adapts:
            parts["adapts"] = _matching(model, plan.lora_layers)
            modules = dict(model.named_modules())
            parts["trains"] = [(m, sum(p.numel() for p in modules[m].parameters()))
                               for m in plan.train_modules if m in modules]
        if method.trains_all:
            parts["trains"] = everything
        if not parts:
            parts["trains"] = []  # nothing (logit-mask)
        report.methods[name] = parts
    return report
