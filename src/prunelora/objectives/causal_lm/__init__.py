"""The causal-LM objectives, by name: one file each and one line here."""
from __future__ import annotations

from ...errors import UserError
from .base import LMObjective, answer_nll, mean_nll, token_batches
from .grad_diff import GradDiff
from .gradient_ascent import GradientAscent
from .npo import NPO
from .retain import RetainFinetune
from .rmu import RMU
from .simnpo import SimNPO

LM_OBJECTIVES: dict[str, type[LMObjective]] = {
    cls.name: cls for cls in (RetainFinetune, GradientAscent, GradDiff, NPO, SimNPO, RMU)}


def get_lm_objective(name: str) -> type[LMObjective]:
    if name not in LM_OBJECTIVES:
        raise UserError(f"unknown language-model objective '{name}' (choose {', '.join(LM_OBJECTIVES)})")
    return LM_OBJECTIVES[name]


__all__ = ["LM_OBJECTIVES", "LMObjective", "answer_nll", "get_lm_objective", "mean_nll", "token_batches"]
