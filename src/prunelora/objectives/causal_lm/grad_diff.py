"""Gradient difference: ascent on the forget set, descent on the retain set (Liu et al. 2022), as open-unlearning's
GradDiff (src/trainer/unlearn/grad_diff.py and configs/trainer/GradDiff.yaml, commit
d3d7cf9e6b3c125d16687d4232680d8d83548f1a: gamma 1, alpha 1, retain_loss_type NLL):
L = -gamma * NLL(forget) + alpha * NLL(retain), each NLL `model(**inputs).loss`, averaged over the batch's answer
tokens (token-weighted, base.token_nll)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import LMObjective, LMRecipe, rows, token_nll


@dataclass
class GradDiffArgs(LMRecipe):
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget set's (negated) loss"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain set's loss"})


class GradDiff(LMObjective):
    name = "graddiff"
    label = "GradDiff"
    reference = "locuslab/open-unlearning src/trainer/unlearn/grad_diff.py (d3d7cf9)"
    space = {"lr": ("log", 1e-6, 1e-3), "alpha": ("log", 0.1, 10.0)}  # what `prunelora search` may set (its Args fields)
    Args = GradDiffArgs

    def loss(self, batch, retain):
        n = rows(batch)
        return -self.args.gamma * token_nll(self.model, batch, n) + self.args.alpha * token_nll(self.model, retain, n)
