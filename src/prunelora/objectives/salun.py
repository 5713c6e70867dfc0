"""SalUn (Fan et al. 2024, "SalUn: empowering machine unlearning via gradient-based weight saliency").

Saliency follows OPTML-Group/Unlearn-Saliency `Classification/generate_mask.py` as fixed in b874ee94
(2023-12-17, the same at HEAD a6e89fd1): the gradient of -CE on the forget set, in eval mode, over
the training loader (so on augmented images where the run augments), summed over the set; the top
`share` (50 %, `with_0.5.pt`) of all trainable weights by |gradient|, ranked globally, are salient.
Here the sum is over samples rather than over batch means (the same ranking but for the weight of a
last partial batch). Then RL (objectives/random_labels.py: the paper-era mixed pass by default,
variant="sequential" for HEAD's) updates only the salient weights.

The other weights must not move at all. Masking the gradient, as the paper-era code does, is not
enough: SGD's weight decay and momentum (and Adam's moments) still move a weight whose gradient is
zero. Here every non-salient weight is restored to its value before unlearning after each optimiser
step, as HEAD a6e89fd1's `_restore_masked_params` does, so it stays bit-identical.
Defaults: SGD lr 1.3e-2 (the README's CIFAR-10 command since f31f82e3; the paper-era README gave 0.1:
--set method_args.salun.lr=0.1), heavy-ball momentum 0.9 (no Nesterov), weight decay 5e-4, batch 256,
50 % salient, augmented training and saliency pass (augment=false turns both off).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import shuffled_batches
from .base import Feed, trainable
from .random_labels import RandomLabels, RLArgs


@dataclass
class SalUnArgs(RLArgs):
    lr: float | None = 1.3e-2
    share: float = 0.5  # share of the trainable weights that are salient (updated)


def saliency_masks(model: nn.Module, feed: Feed, share: float) -> dict[nn.Parameter, torch.Tensor]:
    """A boolean mask per trainable parameter: True on exactly round(share * total) weights with the largest
    |d forget-loss / d weight| over the whole forget set (ties broken by position), on the training batches
    (augmented as the run augments, from its generator)."""
    params = trainable(model)
    was_training = model.training
    model.eval()
    for p in params:
        p.grad = None
    for _, images, labels in shuffled_batches(feed.sets["forget"], feed.batch_size, feed.generator,
                                              feed.augmentation, flip=feed.flip):
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
    reference = "OPTML-Group/Unlearn-Saliency Classification/generate_mask.py (b874ee94) and unlearn/RL.py"
    space = {"lr": ("log", 1e-3, 1e-1), "share": ("float", 0.1, 0.9)}  # what `prunelora search` may set (its Args fields)
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

    def batch_sizes(self, batch_size: int) -> dict[str, int]:
        return {**super().batch_sizes(batch_size), "saliency (forget)": batch_size}

    def own_settings(self) -> dict[str, Any]:
        return {**super().own_settings(), "mask": "top share of weights by |d(-CE forget)/dw| (eval mode, training "
                "batches); the others restored after every step"}

    def salient_share(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total
