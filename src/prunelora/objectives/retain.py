"""Cross-entropy on the retain set: what the paper's methods (and pre-training) optimise."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .base import Feed, Forward, Objective, Progress, cross_entropy_steps


class RetainLoss(Objective):
    name = "retain"
    label = "retain CE"
    reference = "the paper's paradigms (Mittal, AAAI 2025): cross-entropy on the retain set"
    space = {"lr": ("log", 1e-4, 1e-2)}  # what `prunelora search` may set (its Args fields)

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        return cross_entropy_steps(forward, feed, "retain")
