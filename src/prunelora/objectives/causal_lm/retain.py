"""Finetune on the retain set alone (the paper's paradigm; the forget set is never seen)."""
from __future__ import annotations

from .base import LMObjective, mean_nll


class RetainFinetune(LMObjective):
    name = "retain"
    label = "Finetune"
    anchor = "retain"
    uses_retain = False

    def loss(self, batch, retain):
        return mean_nll(self.model, batch)
