"""Negative preference optimisation (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning"): the forget answers as dispreferred responses against the model before
unlearning, L = -(2/beta) E[log sigmoid(-beta (log pi(y|x) - log pi_ref(y|x)))], plus a retain NLL term as
open-unlearning's NPO (configs/trainer/NPO.yaml: beta 0.1, alpha 1, gamma 1; alpha 0 gives the paper's pure
NPO). log pi is the answer's summed token log-probability; the reference's is computed once, before the first
step, from the original model in eval mode."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import LMObjective, LMRecipe, answer_nll, mean_nll


@dataclass
class NPOArgs(LMRecipe):
    beta: float = field(default=0.1, metadata={"help": "inverse temperature"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget term"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain NLL (0: the paper's pure NPO)"})


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/beta) mean log sigmoid(-beta (logp - ref_logp)): 0 at log 2 * 2/beta when logp == ref_logp."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()


class NPO(LMObjective):
    name = "npo"
    label = "NPO"
    Args = NPOArgs

    def start(self, model, feed):
        super().start(model, feed)
        if self.original is None:
            raise ValueError("NPO needs the model before unlearning as its reference")
        data = feed.sets["forget"]
        self.reference = torch.zeros(len(data), device=data.input_ids.device)
        was = self.original.training
        self.original.eval()
        with torch.no_grad():
            for start in range(0, len(data), 64):
                index = torch.arange(start, min(start + 64, len(data)), device=data.input_ids.device)
                self.reference[index] = -answer_nll(self.original, data.rows(index))[0]
        self.original.train(was)

    def loss(self, batch, retain):
        total, _ = answer_nll(self.model, batch)
        out = self.args.gamma * npo_loss(-total, self.reference[batch["index"]], self.args.beta)
        return out + self.args.alpha * mean_nll(self.model, retain) if self.args.alpha else out
