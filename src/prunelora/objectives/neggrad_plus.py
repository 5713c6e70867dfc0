"""NegGrad+ (Kurmanji et al. 2023): descent on the retain set plus weighted ascent on the forget set.

Each step's loss is alpha * CE(retain batch) - (1 - alpha) * CE(forget batch); an epoch is one
pass over the retain set, the forget set cycled beside it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Feed, Forward, Objective, PaperSGD, Progress


@dataclass
class NegGradArgs(PaperSGD):
    lr: float | None = 1e-2
    batch_size: int | None = 128
    alpha: float = 0.999  # weight of the retain loss; 1 - alpha weighs the ascent on the forget set


class NegGradPlus(Objective):
    name = "neggrad+"
    label = "NegGrad+"
    uses_forget = True
    Args = NegGradArgs

    def draws_from(self) -> tuple[str, ...]:
        return ("retain", "forget")

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        alpha = self.args.alpha
        forget = feed.forever("forget")
        for batch in feed.epoch("retain"):
            other = next(forget)
            loss = (alpha * F.cross_entropy(forward(batch.inputs), batch.labels)
                    - (1 - alpha) * F.cross_entropy(forward(other.inputs), other.labels))
            yield loss, len(batch.labels)
