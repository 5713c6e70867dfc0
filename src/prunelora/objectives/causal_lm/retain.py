"""Finetune on the retain set alone (the paper's paradigm; the forget set is never seen), as open-unlearning's
FinetuneTrainer (src/trainer/base.py, commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a: transformers' Trainer and
its compute_loss, the model's loss): the NLL of the batch's answer tokens averaged over all of them
(token-weighted, base.token_nll)."""
from __future__ import annotations

from .base import LMObjective, rows, token_nll


class RetainFinetune(LMObjective):
    name = "retain"
    label = "Finetune"
    reference = "locuslab/open-unlearning src/trainer/base.py FinetuneTrainer (d3d7cf9)"
    space = {"lr": ("log", 1e-5, 1e-2)}  # what `prunelora search` may set (its Args fields)
    anchor = "retain"
    uses_retain = False

    def loss(self, batch, retain):
        return token_nll(self.model, batch, rows(batch))
