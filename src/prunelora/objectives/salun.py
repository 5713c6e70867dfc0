"""SalUn (Fan et al. 2024, "SalUn: empowering machine unlearning via gradient-based weight saliency").

Saliency: the gradient of the forget loss with respect to every trainable weight, accumulated
over the forget set in eval mode; the top `share` of weights by |gradient|, taken globally over
all of them, are salient. Then RL (random labels on the forget set, with the retain set) updates
only the salient weights.

The other weights must not move at all. Masking the gradient, as the reference code does, is
not enough: SGD's weight decay and momentum (and Adam's moments) still move a weight whose
gradient is zero. Here every non-salient weight is restored to its value before unlearning after
each optimiser step, so it stays bit-identical whatever the optimiser does.
Defaults: SalUn's CIFAR-10 settings (SGD, lr 1.3e-2, momentum 0.9, weight decay 5e-4, batch 256,
50 % salient).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import eval_batches
from .base import Feed, trainable
from .random_labels import RandomLabels, RLArgs


@dataclass
class SalUnArgs(RLArgs):
    lr: float | None = 1.3e-2
    share: float = 0.5  # share of the trainable weights that are salient (updated)


def saliency_masks(model: nn.Module, feed: Feed, share: float) -> dict[nn.Parameter, torch.Tensor]:
    """A boolean mask per trainable parameter: True on exactly round(share * total) weights with the largest
    |d forget-loss / d weight| over the whole forget set (ties broken by position)."""
    params = trainable(model)
    was_training = model.training
    model.eval()
    for p in params:
        p.grad = None
    for images, labels in eval_batches(feed.sets["forget"], feed.batch_size):
        (-F.cross_entropy(model(images), labels, reduction="sum")).backward()
    model.train(was_training)
    scores = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).abs().flatten() for p in params])
    for p in params:
        p.grad = None
    keep = round(share * scores.numel())
    flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if keep > 0:
        flat[torch.topk(scores, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for p in params:
        masks[p] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    return masks


class SalUn(RandomLabels):
    name = "salun"
    label = "SalUn"
    Args = SalUnArgs

    def start(self, model: nn.Module, feed: Feed) -> None:
        if not 0.0 < self.args.share <= 1.0:
            raise ValueError(f"salun share must lie in (0, 1], got {self.args.share}")
        self.masks = saliency_masks(model, feed, self.args.share)
        self.frozen = {p: p.detach().clone() for p in self.masks}

    def after_step(self) -> None:
        with torch.no_grad():
            for p, mask in self.masks.items():
                p.copy_(torch.where(mask, p, self.frozen[p]))

    def salient_share(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total
