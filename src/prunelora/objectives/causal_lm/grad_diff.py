"""Gradient difference: ascent on the forget set, descent on the retain set (Liu et al. 2022; open-unlearning
configs/trainer/GradDiff.yaml: gamma 1, alpha 1, retain loss NLL)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import LMObjective, LMRecipe, mean_nll


@dataclass
class GradDiffArgs(LMRecipe):
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget set's (negated) loss"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain set's loss"})


class GradDiff(LMObjective):
    name = "graddiff"
    label = "GradDiff"
    Args = GradDiffArgs

    def loss(self, batch, retain):
        return -self.args.gamma * mean_nll(self.model, batch) + self.args.alpha * mean_nll(self.model, retain)
