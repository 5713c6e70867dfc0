"""Negative preference optimisation (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning"), as open-unlearning's NPO (src/trainer/unlearn/npo.py, compute_dpo_loss in
src/trainer/utils.py and configs/trainer/NPO.yaml, commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a: beta 0.1,
alpha 1, gamma 1, retain_loss_type NLL): the forget answers as dispreferred responses against the model before
unlearning,

    L = gamma * -(2/beta) mean_i log sigmoid(-beta (log pi(y_i|x_i) - log pi_ref(y_i|x_i))) + alpha * NLL(retain),

log pi the answer's summed token log-probability (compute_batch_nll), the forget term a mean over examples
(its definition), the retain NLL averaged over the retain batch's answer tokens (token-weighted,
base.token_nll). alpha 0 gives the paper's pure NPO. The reference's log pi_ref is computed once, before the
first step, from the original model in eval mode (open-unlearning runs its frozen copy in eval mode at each
step: the same numbers)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import LMObjective, LMRecipe, answer_nll, rows, token_nll


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
    reference = "locuslab/open-unlearning src/trainer/unlearn/npo.py (d3d7cf9)"
    space = {"lr": ("log", 1e-6, 1e-3), "beta": ("log", 0.01, 1.0)}  # what `prunelora search` may set (its Args fields)
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
        return out + self.args.alpha * token_nll(self.model, retain, rows(batch)) if self.args.alpha else out
