"""UA, RA, TA and friends, computed from logits so that they can be recomputed from a dump."""
from __future__ import annotations

import numpy as np
import torch

from .entry import Evidence, EvidenceInputs
from .spec import spec_of


def accuracy(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Top-1 accuracy in percent; NaN for an empty set."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(axis=1) == labels).mean() * 100.0)


def unlearning_metrics(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """The paper's accuracy metrics: UA = 100 - Acc(forget-train), RA = Acc(retain-train), TA = Acc(test-retain)."""
    return {
        "ua": 100.0 - accuracy(logits["forget_train"], labels["forget_train"]),
        "ra": accuracy(logits["retain_train"], labels["retain_train"]),
        "ta": accuracy(logits["test_retain"], labels["test_retain"]),
        "forget_test_acc": accuracy(logits["test_forget"], labels["test_forget"]),
    }


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    return unlearning_metrics(inputs.logits, inputs.labels)


# Timed with the attacks, as it always was (exp.timings["attacks"]).
ENTRY = Evidence("accuracy", _compute, tuple(spec_of(k) for k in ("ua", "ra", "ta", "forget_test_acc")),
                 timing="attacks")
