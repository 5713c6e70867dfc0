"""The causal-LM objectives: one file each, registered for the causal-LM task in objectives/__init__.py."""
from __future__ import annotations

from .base import LMObjective, answer_nll, mean_nll, token_batches
from .grad_diff import GradDiff
from .gradient_ascent import GradientAscent
from .npo import NPO
from .retain import RetainFinetune
from .rmu import RMU
from .simnpo import SimNPO

__all__ = ["GradDiff", "GradientAscent", "LMObjective", "NPO", "RMU", "RetainFinetune", "SimNPO", "answer_nll",
           "mean_nll", "token_batches"]
