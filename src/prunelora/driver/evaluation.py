"""Measuring one model: its logits on the four splits (saved), then every metric and attack computed from them.

Kept apart from the stages so that what is measured (and when a finished stage must be re-measured:
evidence_key) has one home.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from .. import storage
from ..config import RunConfig, fingerprint, to_dict
from ..data import Splits
from ..metrics.evaluate import SPLITS, collect_logits, metrics_from_logits, model_evidence, set_accuracy
from ..metrics.finite import require_finite_logits

EVIDENCE_VERSION = 5  # raised when the evidence itself changes: finished stages are re-evaluated


def evidence_key(config: RunConfig) -> str:
    """What a stage's rows were evaluated with: another key re-evaluates its saved models."""
    return fingerprint("evidence", EVIDENCE_VERSION, to_dict(config)["evidence"], config.mia_max_per_side)


def measure(model: nn.Module, splits: Splits, seed: int, config: RunConfig, logits_path: Path | None,
            reference: nn.Module | None, timings: dict[str, float], sequential: bool) -> dict:
    """Every metric on `splits`; in a sequence, the accuracy on each request's data too.

    reference: the original the model came from (relearn time starts from it), or None.
    """
    features: dict = {}  # the probe's features, from the same forward passes
    probe = features if config.evidence.probe else None
    logits, labels = collect_logits(model, splits, config.eval_batch_size, probe)
    require_finite_logits(logits)  # before the logits are saved: a NaN model leaves nothing behind
    if logits_path is not None:
        save_logits(logits_path, logits, labels)
    metrics = metrics_from_logits(logits, labels, seed, config.mia_max_per_side, config.evidence, timings)
    metrics.update(model_evidence(model, splits, seed, config.evidence, reference, config.eval_batch_size, timings,
                                  features or None))
    if sequential:
        for k, part in enumerate(splits.request_sets, start=1):
            metrics[f"forget_acc_r{k}"] = set_accuracy(model, part, config.eval_batch_size)
    return metrics


def save_logits(path: Path, logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> None:
    """`<split>_logits` and `<split>_labels` for the four splits, written atomically."""
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_logits"] = logits[split]
        arrays[f"{split}_labels"] = labels[split]
    with storage.atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
