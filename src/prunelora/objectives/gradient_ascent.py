"""GA: gradient ascent on the forget set (Thudi et al. 2022; the GA of Liu et al. 2023).

One epoch is one pass over the forget set; the retain set is never seen. Defaults are the
CIFAR-10 settings of Liu et al.'s code (SGD, lr 1e-4, momentum 0.9, weight decay 5e-4, batch 256).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .base import Feed, Forward, Objective, PaperSGD, Progress, cross_entropy_steps


@dataclass
class GAArgs(PaperSGD):
    lr: float | None = 1e-4
    batch_size: int | None = 256


class GradientAscent(Objective):
    name = "ga"
    label = "GA"
    uses_forget = True
    Args = GAArgs

    def draws_from(self) -> tuple[str, ...]:
        return ("forget",)

    def steps_per_epoch(self, feed: Feed) -> int:
        return feed.steps("forget")

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        return cross_entropy_steps(forward, feed, "forget", sign=-1.0)
