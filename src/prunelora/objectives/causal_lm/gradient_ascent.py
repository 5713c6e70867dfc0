"""Gradient ascent on the forget set's answers, as open-unlearning's GradAscent (src/trainer/unlearn/grad_ascent.py,
commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a): loss = -model(**forget).loss, the negated NLL of the batch's
answer tokens averaged over all of them (token-weighted, base.token_nll)."""
from __future__ import annotations

from .base import LMObjective, rows, token_nll


class GradientAscent(LMObjective):
    name = "ga"
    label = "GA"
    reference = "locuslab/open-unlearning src/trainer/unlearn/grad_ascent.py (d3d7cf9)"
    space = {"lr": ("log", 1e-6, 1e-3)}  # what `prunelora search` may set (its Args fields)
    uses_retain = False

    def loss(self, batch, retain):
        return -token_nll(self.model, batch, rows(batch))
