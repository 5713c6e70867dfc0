"""Objective registry: name -> Objective class. Adding one is one file and one line here."""
from __future__ import annotations

from ..errors import UserError
from .base import Batch, Feed, Objective, Progress, Recipe
from .gradient_ascent import GradientAscent
from .l1_sparse import L1Sparse
from .neggrad_plus import NegGradPlus
from .random_labels import RandomLabels
from .retain import RetainLoss
from .salun import SalUn
from .scrub import Scrub

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (
    RetainLoss, GradientAscent, NegGradPlus, RandomLabels, L1Sparse, SalUn, Scrub)}


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise UserError(f"unknown objective '{name}' (choose from: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name]


__all__ = ["Batch", "Feed", "OBJECTIVES", "Objective", "Progress", "Recipe", "get_objective"]
