"""GA: gradient ascent on the forget set (Thudi et al. 2022; the GA of Liu et al. 2023 and SalUn).

One epoch is one pass over the forget set with -CE; the retain set is never seen. Follows
OPTML-Group/Unlearn-Sparse `unlearn/GA.py` (HEAD 80ba55d3; the same in Unlearn-Saliency at 95766237):
SGD lr 1e-4 (the README's command: `--unlearn GA --unlearn_lr 0.0001 --unlearn_epochs 5`), heavy-ball
momentum 0.9 (no Nesterov), weight decay 5e-4, batch 256, constant lr, on augmented images (`dataset.py`:
RandomCrop(32, padding=4) + RandomHorizontalFlip; flip only where the images allow it).
Named option: augment=false (--set method_args.ga.augment=false).
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
    augment: bool | None = True


class GradientAscent(Objective):
    name = "ga"
    label = "GA"
    reference = "OPTML-Group/Unlearn-Sparse unlearn/GA.py (80ba55d3)"
    space = {"lr": ("log", 1e-5, 1e-2)}  # what `prunelora search` may set (its Args fields)
    uses_forget = True
    Args = GAArgs

    def draws_from(self) -> tuple[str, ...]:
        return ("forget",)

    def steps_per_epoch(self, feed: Feed) -> int:
        return feed.steps("forget")

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        return cross_entropy_steps(forward, feed, "forget", sign=-1.0)
