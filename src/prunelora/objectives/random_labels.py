"""RL, random labels (Golatkar et al. 2020; the RL of SalUn, Fan et al. 2024).

Every forget sample gets a random label other than its own, drawn once per run from the run's
seed; the relabelled forget set and the retain set are shuffled together and trained with
cross-entropy. Defaults: SalUn's CIFAR-10 settings (SGD, lr 1e-2, momentum 0.9, weight decay 5e-4,
batch 256).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..data import ImageSet
from .base import Feed, Forward, Objective, PaperSGD, Progress, cross_entropy_steps, num_classes


@dataclass
class RLArgs(PaperSGD):
    lr: float | None = 1e-2
    batch_size: int | None = 256


def other_labels(labels: torch.Tensor, classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from each true one: (y + U{1..C-1}) mod C."""
    if classes < 2:
        raise ValueError("random labels need at least two classes")
    shift = torch.randint(1, classes, labels.shape, generator=generator).to(labels.device)
    return (labels + shift) % classes


class RandomLabels(Objective):
    name = "rl"
    label = "RL"
    uses_forget = True
    Args = RLArgs

    def data(self, feed: Feed, model: nn.Module) -> None:
        retain, forget = feed.sets["retain"], feed.sets["forget"]
        self.forget_labels = other_labels(forget.labels, num_classes(model, retain), feed.generator)
        feed.add("relabelled", ImageSet.join([retain, forget], torch.cat([retain.labels, self.forget_labels])))

    def draws_from(self) -> tuple[str, ...]:
        return ("relabelled",)

    def steps_per_epoch(self, feed: Feed) -> int:
        return feed.steps("relabelled")

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        return cross_entropy_steps(forward, feed, "relabelled")
