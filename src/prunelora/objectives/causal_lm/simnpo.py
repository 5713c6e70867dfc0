"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning"): NPO without a reference model, on the length-normalised log-likelihood,
L = -(2/beta) E[log sigmoid(beta (NLL(y|x)/|y| - delta))], plus a retain NLL term; as open-unlearning's
SimNPO (configs/trainer/SimNPO.yaml: beta 4.5, delta 0, gamma 0.125, alpha 1)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import LMObjective, LMRecipe, answer_nll, mean_nll


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
    Args = SimNPOArgs

    def loss(self, batch, retain):
        total, counts = answer_nll(self.model, batch)
        out = self.args.gamma * simnpo_loss(total / counts.clamp(min=1), self.args.beta, self.args.delta)
        return out + self.args.alpha * mean_nll(self.model, retain) if self.args.alpha else out
