"""NegGrad+ (Kurmanji et al. 2023): descent on the retain set plus weighted ascent on the forget set.

Follows meghdadk/SCRUB `thirdparty/repdistiller/helper/loops.py` `train_negrad` (identical at release
9cc8740a and HEAD 98ffb119) with the settings of its `large_scale_ictest.ipynb` (HEAD): each step's
loss is alpha * CE(retain batch) - (1 - alpha) * CE(forget batch), alpha 0.9999; an epoch is one pass
over the retain set (batch 128) with the forget set (batch 32) cycled beside it by `itertools.cycle`,
which replays the epoch's first shuffled pass of forget batches rather than reshuffling; plain SGD lr
0.01 without momentum or weight decay (`SGD(lr, weight_decay=0.0)`), constant lr, no augmentation
(the repository's loaders never augment).
Named options (--set method_args.neggrad+.<name>=...): forget_cycle="reshuffle" (every pass over the
forget set shuffled anew); momentum, weight_decay (the paper's text says 5e-4; the code uses 0);
augment=true.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Feed, Forward, Objective, Progress, Recipe

CYCLES = ("replay", "reshuffle")


@dataclass
class NegGradArgs(Recipe):
    optimizer: str | None = "sgd"
    lr: float | None = 1e-2
    momentum: float | None = 0.0
    weight_decay: float | None = 0.0
    batch_size: int | None = 128  # the retain batch
    augment: bool | None = False
    forget_batch_size: int = 32
    alpha: float = 0.9999  # weight of the retain loss; 1 - alpha weighs the ascent on the forget set
    forget_cycle: str = "replay"  # replay: itertools.cycle's repeats of the first pass | reshuffle

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.forget_cycle not in CYCLES:
            raise UserError(f"neggrad+ forget_cycle must be one of {', '.join(CYCLES)}, got '{self.forget_cycle}'")


class NegGradPlus(Objective):
    name = "neggrad+"
    label = "NegGrad+"
    reference = "meghdadk/SCRUB thirdparty/repdistiller/helper/loops.py train_negrad (98ffb119)"
    space = {"lr": ("log", 1e-4, 1e-1), "alpha": ("float", 0.9, 0.9999)}  # what `prunelora search` may set (its Args fields)
    uses_forget = True
    Args = NegGradArgs

    def draws_from(self) -> tuple[str, ...]:
        return ("retain", "forget")

    def batch_sizes(self, batch_size: int) -> dict[str, int]:
        return {"retain": batch_size, "forget": self.args.forget_batch_size}

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        alpha = self.args.alpha
        forget = feed.forever("forget", self.args.forget_batch_size, replay=self.args.forget_cycle == "replay")
        for batch in feed.epoch("retain"):
            other = next(forget)
            loss = (alpha * F.cross_entropy(forward(batch.inputs), batch.labels)
                    - (1 - alpha) * F.cross_entropy(forward(other.inputs), other.labels))
            yield loss, len(batch.labels)
