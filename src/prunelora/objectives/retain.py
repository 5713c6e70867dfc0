"""Cross-entropy on the retain set: what the paper's methods (and pre-training) optimise."""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .base import Feed, Forward, Objective, Progress


class RetainLoss(Objective):
    name = "retain"
    label = "retain CE"

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        for batch in feed.epoch("retain"):
            yield F.cross_entropy(forward(batch.inputs), batch.labels), len(batch.labels)
