"""Gradient ascent on the forget set's answers (open-unlearning's GradAscent: the negated NLL)."""
from __future__ import annotations

from .base import LMObjective, mean_nll


class GradientAscent(LMObjective):
    name = "ga"
    label = "GA"
    uses_retain = False

    def loss(self, batch, retain):
        return -mean_nll(self.model, batch)
