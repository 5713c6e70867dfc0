"""Objective registry: what one training step optimises, per task. Adding one is one file and one line here.

`register_objective(Cls, task=...)` checks the name and binds the class; `get_objective(name, task)` finds it.
The image objectives train a classifier's cross-entropy; the causal-LM objectives (objectives/causal_lm/) a
language model's answer tokens. Both run through the one training loop (train.fit).
"""
from __future__ import annotations

from ..registry import CAUSAL_LM, IMAGE, Registry
from .base import Batch, Feed, Objective, Progress, Recipe
from .causal_lm import NPO, RMU, GradDiff, RetainFinetune, SimNPO
from .causal_lm import GradientAscent as TokenGradientAscent
from .gradient_ascent import GradientAscent
from .l1_sparse import L1Sparse
from .neggrad_plus import NegGradPlus
from .random_labels import RandomLabels
from .retain import RetainLoss
from .salun import SalUn
from .scrub import Scrub

OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def register_objective(cls: type[Objective], *, task: str = IMAGE) -> type[Objective]:
    """Register an Objective subclass under its `name` for `task` (its defaults: its `Args` dataclass)."""
    if not (isinstance(cls, type) and issubclass(cls, Objective)) or not cls.label:
        raise ValueError(f"an objective is an Objective subclass with a name and a label: {cls!r}")
    return OBJECTIVES.register(cls, task=task)


def get_objective(name: str, task: str = IMAGE) -> type[Objective]:
    return OBJECTIVES.get(name, task)


for _cls in (RetainLoss, GradientAscent, NegGradPlus, RandomLabels, L1Sparse, SalUn, Scrub):
    register_objective(_cls, task=IMAGE)
for _cls in (RetainFinetune, TokenGradientAscent, GradDiff, NPO, SimNPO, RMU):
    register_objective(_cls, task=CAUSAL_LM)

__all__ = ["Batch", "Feed", "OBJECTIVES", "Objective", "Progress", "Recipe", "get_objective", "register_objective"]
