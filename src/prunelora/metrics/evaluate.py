"""Evaluate a model on the four splits: logits once, then every registered evidence entry (registry.py)."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import nn

from .. import distributed
from ..config import EvidenceConfig
from ..data import EVAL_BATCH, Splits
from ..registry import IMAGE
from .blas import one_blas_thread
from .entry import Evidence, EvidenceInputs
from .finite import require_finite_logits
from .outputs import per_sample_loss, predict, set_accuracy
from .probe import classifier_head, head_inputs, stacked
from .registry import EVIDENCE
from .spec import MIA_MAX_PER_SIDE

SPLITS = ("forget_train", "retain_train", "test_retain", "test_forget")

__all__ = ["SPLITS", "collect_logits", "metrics_from_logits", "model_evidence", "per_sample_loss", "predict",
           "run_evidence", "set_accuracy", "timed"]


def collect_logits(model: nn.Module, splits: Splits, batch_size: int = EVAL_BATCH,
                   features: dict[str, np.ndarray | None] | None = None) -> tuple[dict, dict]:
    """Every split's logits and labels. features: a dict to fill with each split's penultimate features,
    captured in the same forward passes (the probe then runs none of its own; single process only)."""
    named = splits.named()
    capture = features is not None and not distributed.active()
    with head_inputs(model, splits.num_classes) if capture else contextlib.nullcontext() as captured:
        logits = {}
        for k in SPLITS:
            start = len(captured) if captured is not None else 0
            logits[k] = predict(model, named[k], batch_size)
            if captured is not None:
                features[k] = stacked(captured[start:], classifier_head(model, splits.num_classes).in_features)
    labels = {k: named[k].labels.cpu().numpy() for k in SPLITS}
    return logits, labels


def metrics_from_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int = 0,
                        mia_cap: int = MIA_MAX_PER_SIDE, evidence: EvidenceConfig | None = None,
                        timings: dict[str, float] | None = None) -> dict[str, float]:
    """The evidence read from the outputs alone: UA, RA, TA, forget-test accuracy, every membership attack,
    the challenge's loss attack, the head response, and any registered entry of that kind, in percent.

    mia_efficacy / mia_attack_acc are the paper's attack (SVC on true-class confidence); the other
    attacks of the suite follow (keys from attacks.attack_keys), all on the same shadow draws.
    `timings` (optional) accumulates the seconds each part took.
    """
    require_finite_logits(logits)  # no NaN reaches an accuracy, an attack or a verdict
    inputs = EvidenceInputs(logits, labels, seed, evidence or EvidenceConfig(), mia_cap)
    return run_evidence([e for e in EVIDENCE.values() if e.task == IMAGE and not e.model_level], inputs, timings)


def model_evidence(model: nn.Module, splits: Splits, seed: int, evidence: EvidenceConfig,
                   original: nn.Module | None = None, batch_size: int = EVAL_BATCH,
                   timings: dict[str, float] | None = None,
                   features: dict[str, np.ndarray | None] | None = None) -> dict[str, float]:
    """What the outputs cannot show: the probe on the features (those collect_logits captured, when
    given), relearn time (given the original model), and any registered entry that needs the model."""
    inputs = EvidenceInputs({}, {}, seed, evidence, model=model, splits=splits, original=original,
                            batch_size=batch_size, features=features)
    return run_evidence([e for e in EVIDENCE.values() if e.task == IMAGE and e.model_level], inputs, timings)


def run_evidence(entries: list[Evidence], inputs: Any,
                 timings: dict[str, float] | None = None) -> dict[str, float]:
    """Each enabled entry's metrics, in order, its wall seconds added to timings[entry.timing]."""
    out: dict[str, float] = {}
    for entry in entries:
        if not entry.enabled(inputs):
            continue
        blas = one_blas_thread() if entry.one_blas_thread else contextlib.nullcontext()
        with blas, timed(timings if entry.timing else None, entry.timing or ""):
            out.update(entry.compute(inputs))
    return out


@contextlib.contextmanager
def timed(timings: dict[str, float] | None, part: str) -> Iterator[None]:
    """Add the block's wall seconds to timings[part] (nothing when timings is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[part] = timings.get(part, 0.0) + time.perf_counter() - start
