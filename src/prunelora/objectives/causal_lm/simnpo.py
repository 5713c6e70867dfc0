"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning"): NPO without a reference model, on the length-normalised log-likelihood, as open-unlearning's
SimNPO (src/trainer/unlearn/simnpo.py and configs/trainer/SimNPO.yaml, commit
d3d7cf9e6b3c125d16687d4232680d8d83548f1a: beta 4.5, delta 0, gamma 0.125, alpha 1, retain_loss_type NLL):

    L = gamma * -(2/beta) mean_i log sigmoid(beta (NLL(y_i|x_i)/|y_i| - delta)) + alpha * NLL(retain),

the forget term a mean over examples of each answer's summed NLL over its token count (its definition), the
retain NLL averaged over the retain batch's answer tokens (token-weighted, base.token_nll)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import LMObjective, LMRecipe, answer_nll, rows, token_nll


@dataclass
class SimNPOArgs(LMRecipe):
    beta: float = field(default=4.5, metadata={"help": "inverse temperature"})
    delta: float = field(default=0.0, metadata={"help": "reward margin"})
    gamma: float = field(default=0.125, metadata={"help": "weight of the forget term"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain NLL"})


def simnpo_loss(avg_nll: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    return -(2.0 / beta) * F.logsigmoid(beta * (avg_nll - delta)).mean()


class SimNPO(LMObjective):
    name = "simnpo"
    label = "SimNPO"
    reference = "locuslab/open-unlearning src/trainer/unlearn/simnpo.py (d3d7cf9)"
    space = {"lr": ("log", 1e-6, 1e-3), "beta": ("log", 1.0, 10.0)}  # what `prunelora search` may set (its Args fields)
    Args = SimNPOArgs

    def loss(self, batch, retain):
        total, counts = answer_nll(self.model, batch)
        out = self.args.gamma * simnpo_loss(total / counts.clamp(min=1), self.args.beta, self.args.delta)
        return out + self.args.alpha * token_nll(self.model, retain, rows(batch)) if self.args.alpha else out
