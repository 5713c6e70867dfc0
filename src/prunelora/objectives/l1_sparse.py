"""l1-sparse (Liu et al. 2023, "Model sparsity can simplify machine unlearning"): finetune on the
retain set with an l1 penalty on the weights whose weight decays linearly.

Follows OPTML-Group/Unlearn-Sparse `unlearn/FT.py` (`FT_l1`, reached through `unlearn/FT_prune.py`) at
HEAD 80ba55d3 (the linear schedule since 6c1ba03e): loss = CE(retain) + gamma_e * sum |theta| over the
trainable parameters, gamma_e = gamma * (1 - e / E) for epoch e = 0 .. E-1 (never reaching 0), constant
within an epoch. E is each evaluation budget's own length: every budget is a run of its own from the
same start and seed (schedule_spans_budget), so the 5-epoch row gets a full 5-epoch decay, not the
midpoint of a 10-epoch one.
gamma 1e-4 is the only concrete value traceable in public code: JingWu321/Scissorhands
`Classification/sh/main_0.1_cifar10.sh`, built on the SalUn code (`--unlearn FT_prune --alpha 0.0001
--unlearn_lr 0.01 --unlearn_epochs 10`, CIFAR-10 ResNet-18, random 10 %). The authors' own value could
not be traced: their READMEs leave `--alpha` open, and the parser default 0.2 ("unlearn noise") is shared
with IU, not an l1 weight.
Defaults: the `iterative_unlearn` optimiser (`unlearn/impl.py`), SGD lr 1e-2 (README), heavy-ball momentum
0.9 (no Nesterov), weight decay 5e-4, batch 256, constant lr, on augmented images (`dataset.py`:
RandomCrop(32, padding=4) + RandomHorizontalFlip; flip only where the images allow it).
Named option: augment=false (--set method_args.ft-l1.augment=false).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Feed, Forward, Objective, PaperSGD, Progress, trainable


@dataclass
class L1Args(PaperSGD):
    lr: float | None = 1e-2
    batch_size: int | None = 256
    augment: bool | None = True
    gamma: float = 1e-4  # the l1 weight at the first epoch (the reference's --alpha)


class L1Sparse(Objective):
    name = "l1-sparse"
    label = "l1-sparse"
    reference = "OPTML-Group/Unlearn-Sparse unlearn/FT.py FT_l1 (80ba55d3)"
    space = {"lr": ("log", 1e-3, 1e-1), "gamma": ("log", 1e-6, 1e-3)}  # what `prunelora search` may set (its Args fields)
    Args = L1Args
    schedule_spans_budget = True

    def start(self, model: nn.Module, feed: Feed) -> None:
        self.params = trainable(model)

    def weight(self, progress: Progress) -> float:
        """gamma * (1 - e / E), e the 0-based epoch, E the run's length (one budget's)."""
        return self.args.gamma * (1.0 - (progress.epoch - 1) / progress.epochs)

    def own_settings(self) -> dict[str, Any]:
        return {**super().own_settings(), "gamma_schedule": "gamma * (1 - e / E), e = 0 .. E-1, E = the budget"}

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        gamma = self.weight(progress)
        for batch in feed.epoch("retain"):
            penalty = sum(p.abs().sum() for p in self.params)
            yield F.cross_entropy(forward(batch.inputs), batch.labels) + gamma * penalty, len(batch.labels)
