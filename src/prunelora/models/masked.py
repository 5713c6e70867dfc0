"""A model whose chosen classes can never be predicted: its logits for them are minus infinity.

What the logit-mask method delivers (methods/logit_mask.py), and what a checkpoint with `masked_classes`
in its metadata loads back into (storage.load_model): a model-level idea, so it lives with the models.
"""
from __future__ import annotations

import torch
from torch import nn


class LogitMasked(nn.Module):
    """model's logits with the given classes' set to -inf (nested masks merge into one)."""

    def __init__(self, model: nn.Module, classes: list[int]) -> None:
        super().__init__()
        if isinstance(model, LogitMasked):
            classes = sorted(set(model.classes) | set(classes))
            model = model.inner
        self.inner = model
        self.classes = sorted(set(int(c) for c in classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        masked = logits.clone()
        masked[:, self.classes] = float("-inf")
        return masked
