"""Evaluate a model on the four splits: logits once, every metric from them."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import ImageSet, Splits, eval_batches
from .accuracy import accuracy, unlearning_metrics
from .attacks import attack_suite

SPLITS = ("forget_train", "retain_train", "test_retain", "test_forget")


@torch.inference_mode()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 1024) -> np.ndarray:
    """Logits of every sample, in eval mode under inference_mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x).float().cpu() for x, _ in eval_batches(data, batch_size)]
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(chunks).numpy()


def set_accuracy(model: nn.Module, data: ImageSet, batch_size: int = 1024) -> float:
    """Top-1 accuracy (%) of the model on one set (NaN when it is empty): the per-epoch forgetting check."""
    if len(data) == 0:
        return float("nan")
    return accuracy(predict(model, data, batch_size), data.labels.cpu().numpy())


def collect_logits(model: nn.Module, splits: Splits, batch_size: int = 1024) -> tuple[dict, dict]:
    named = splits.named()
    logits = {k: predict(model, named[k], batch_size) for k in SPLITS}
    labels = {k: named[k].labels.cpu().numpy() for k in SPLITS}
    return logits, labels


def metrics_from_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int = 0,
                        mia_cap: int = 1000) -> dict[str, float]:
    """UA, RA, TA, forget-test accuracy and every membership attack, in percent.

    mia_efficacy / mia_attack_acc are the paper's attack (SVC on true-class confidence); the other
    attacks of the suite follow as mia_<name> / mia_<name>_acc, all on the same shadow sample.
    """
    attacks = attack_suite(logits, labels, seed, mia_cap)
    default = {"mia_efficacy": attacks.pop("mia_svc_confidence"),
               "mia_attack_acc": attacks.pop("mia_svc_confidence_acc"),
               "mia_attack_conclusive": attacks.pop("mia_svc_confidence_conclusive")}
    return {**unlearning_metrics(logits, labels), **default, **attacks}


def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each sample (for the Figure 2 histograms and loss-based attacks)."""
    if len(labels) == 0:
        return np.zeros(0)
    from .attacks import floor_logits

    z = floor_logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]
