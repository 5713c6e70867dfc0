"""Does the forgotten class's output still answer to the input? A head-level mask shows here.

A model that hides a class in its head (the forget class's logit pinned to a constant, a zeroed
row of the classifier) scores like Retrain on every output-based measure, and where the features
of a weak model barely carry the class, the probe cannot tell either. Retrain's forget-class logit
is an ordinary output never trained towards: it still moves with the input. So the head response
is the spread (std over the test set) of the forgotten classes' logits, as a percentage of the
other classes' spread: about Retrain's for a model that unlearned, near 0 for one whose output for
the class is cut off from the input.
"""
from __future__ import annotations

import numpy as np

from .entry import Evidence, EvidenceInputs
from .spec import spec_of


def head_response(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """{"head_response": %} for class-wise forgetting (the test set's forgotten classes); {} otherwise."""
    forgotten = np.unique(labels.get("test_forget", np.zeros(0, dtype=int)))
    parts = [logits[k] for k in ("test_retain", "test_forget") if k in logits and logits[k].size]
    if forgotten.size == 0 or not parts:
        return {}
    test = np.concatenate(parts).astype(np.float64)
    finite = np.isfinite(test)  # a logit pinned to -inf responds to nothing
    spread = np.array([float(np.std(col[ok])) if ok.sum() > 1 else 0.0 for col, ok in zip(test.T, finite.T)])
    others = np.setdiff1d(np.arange(test.shape[1]), forgotten)
    reference = float(np.mean(spread[others])) if others.size else 0.0
    if reference <= 0:
        return {"head_response": float("nan")}
    return {"head_response": 100.0 * float(np.mean(spread[forgotten])) / reference}


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    return head_response(inputs.logits, inputs.labels)


ENTRY = Evidence("head", _compute, (spec_of("head_response"),), one_blas_thread=False)
