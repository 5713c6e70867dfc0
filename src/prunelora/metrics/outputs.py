"""A model's outputs, the layer every metric builds on: batched logits, per-sample loss, one set's accuracy.

Kept apart from evaluate.py (which runs every metric) so that the attacks, the challenge and relearn
time can use them without importing the evaluation that imports them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..data import EVAL_BATCH, ImageSet, eval_batches
from .accuracy import accuracy
from .finite import floor_logits


@torch.inference_mode()
def predict(model: nn.Module, data: ImageSet, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits of every sample, in eval mode under inference_mode; the model's mode is restored.

    Under torchrun each rank computes its shard and every rank gets all of them (distributed.py).
    """
    n = len(data)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    sharded = distributed.active()
    part = data.subset(torch.arange(n)[distributed.shard_slice(n)]) if sharded else data
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x).float() for x, _ in eval_batches(part, batch_size)]
        if not chunks:  # fewer samples than ranks: this rank still needs the logits' width
            chunks = [model(next(eval_batches(data, 1))[0]).float()[:0]]
    finally:
        model.train(was_training)
    logits = torch.cat(chunks)
    return (distributed.gather_rows(logits, n) if sharded else logits).cpu().numpy()


def set_accuracy(model: nn.Module, data: ImageSet, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy (%) of the model on one set (NaN when it is empty): the per-epoch forgetting check."""
    if len(data) == 0:
        return float("nan")
    return accuracy(predict(model, data, batch_size), data.labels.cpu().numpy())


def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each sample (for the Figure 2 histograms and loss-based attacks)."""
    if len(labels) == 0:
        return np.zeros(0)
    z = floor_logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]
