"""l1-sparse (Liu et al. 2023, "Model sparsity can simplify machine unlearning"): finetune on the
retain set with an l1 penalty on the weights whose weight decays linearly to zero.

loss = CE(retain) + gamma_t * sum |theta| over the trainable parameters, gamma_t = gamma * (1 - t / T)
for epoch t = 0 .. T-1 (their code's schedule). Defaults: their CIFAR-10 settings (SGD, lr 1e-2,
momentum 0.9, weight decay 5e-4, batch 256, gamma 5e-4).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Feed, Forward, Objective, PaperSGD, Progress, trainable


@dataclass
class L1Args(PaperSGD):
    lr: float | None = 1e-2
    batch_size: int | None = 256
    gamma: float = 5e-4  # the l1 weight at the first epoch


class L1Sparse(Objective):
    name = "l1-sparse"
    label = "l1-sparse"
    Args = L1Args

    def start(self, model: nn.Module, feed: Feed) -> None:
        self.params = trainable(model)

    def weight(self, progress: Progress) -> float:
        return self.args.gamma * (1.0 - (progress.epoch - 1) / progress.epochs)

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        gamma = self.weight(progress)
        for batch in feed.epoch("retain"):
            penalty = sum(p.abs().sum() for p in self.params)
            yield F.cross_entropy(forward(batch.inputs), batch.labels) + gamma * penalty, len(batch.labels)
