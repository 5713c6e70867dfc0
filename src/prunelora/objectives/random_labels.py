"""RL, random labels (Golatkar et al. 2020; the RL of Liu et al. 2023 and of SalUn, Fan et al. 2024).

Follows OPTML-Group/Unlearn-Saliency `Classification/unlearn/RL.py` as it ran for CIFAR-10 behind the
published numbers: first public commit 95766237 (2023-10-11), the same through 48824303 (2024-01-30).
Every epoch each forget sample gets a label drawn uniformly over all C classes (its own class 1/C of
the time: `np.random.randint(0, num_classes)`), and the relabelled forget set and the retain set are
shuffled together into one pass of cross-entropy (a `ConcatDataset`). Labels drawn anew each time
push the outputs towards uniform; labels fixed for a run could be memorised. They come from the
run's seeded generator, never a global RNG.

Defaults: the reference's `unlearn/impl.py` optimiser, SGD lr 1e-2 (arg_parser's unlearn_lr),
heavy-ball momentum 0.9 (no Nesterov), weight decay 5e-4, batch 256 (arg_parser), constant lr, on
augmented images (`dataset.py`: RandomCrop(32, padding=4) + RandomHorizontalFlip; flip only where
the images allow it).
Named options (--set method_args.rl.<name>=...):
- variant="sequential": the code from f31f82e3 (2024-04-04) to HEAD a6e89fd1: each epoch a pass over
  the forget set with labels drawn per batch, then a pass over the retain set (separate steps).
- augment=false: no augmentation.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageSet
from ..errors import UserError
from .base import Feed, Forward, Objective, PaperSGD, Progress, cross_entropy_steps, num_classes

VARIANTS = ("mixed", "sequential")


@dataclass
class RLArgs(PaperSGD):
    lr: float | None = 1e-2
    batch_size: int | None = 256
    augment: bool | None = True
    variant: str = "mixed"  # mixed: one shuffled pass, labels per epoch (paper era) | sequential: HEAD's two passes

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise UserError(f"random-label variant must be one of {', '.join(VARIANTS)}, got '{self.variant}'")


def random_labels(size: int, classes: int, generator: torch.Generator) -> torch.Tensor:
    """size labels uniform over all classes (the true one included), from the run's generator."""
    if classes < 2:
        raise ValueError("random labels need at least two classes")
    return torch.randint(0, classes, (size,), generator=generator)


class RandomLabels(Objective):
    name = "rl"
    label = "RL"
    reference = "OPTML-Group/Unlearn-Saliency Classification/unlearn/RL.py (95766237)"
    space = {"lr": ("log", 1e-3, 1e-1)}  # what `prunelora search` may set (its Args fields)
    uses_forget = True
    Args = RLArgs

    def data(self, feed: Feed, model: nn.Module) -> None:
        retain, forget = feed.sets["retain"], feed.sets["forget"]
        self.classes = num_classes(model, retain)
        self.forget_labels = forget.labels.clone()  # the labels of the latest forget pass, in the set's order
        if self.args.variant == "mixed":
            feed.add("relabelled", ImageSet.join([retain, forget]))  # its forget labels are redrawn every epoch

    def draws_from(self) -> tuple[str, ...]:
        return ("relabelled",) if self.args.variant == "mixed" else ("forget", "retain")

    def steps_per_epoch(self, feed: Feed) -> int:
        return sum(feed.steps(name) for name in self.draws_from())

    def batch_sizes(self, batch_size: int) -> dict[str, int]:
        if self.args.variant == "mixed":
            return {"retain+forget": batch_size}
        return super().batch_sizes(batch_size)

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        if self.args.variant == "mixed":
            joined = feed.sets["relabelled"]
            drawn = random_labels(len(self.forget_labels), self.classes, feed.generator)
            self.forget_labels = drawn.to(joined.labels.device)
            joined.labels[len(joined) - len(drawn):] = self.forget_labels
            yield from cross_entropy_steps(forward, feed, "relabelled")
            return
        for batch in feed.epoch("forget"):
            labels = random_labels(batch.size, self.classes, feed.generator)[batch.rows].to(batch.labels.device)
            self.forget_labels[batch.index] = labels
            yield F.cross_entropy(forward(batch.inputs), labels), len(labels)
        yield from cross_entropy_steps(forward, feed, "retain")

    def own_settings(self) -> dict[str, Any]:
        labels = ("uniform over all classes, redrawn every epoch, forget and retain shuffled together"
                  if self.args.variant == "mixed" else
                  "uniform over all classes, redrawn every forget batch; a forget pass, then a retain pass")
        return {**super().own_settings(), "labels": labels}
