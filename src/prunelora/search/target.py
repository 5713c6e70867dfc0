"""What a search aims at: whether a trial's model passes, and how far from passing it is.

With Retrain (a researcher's run): the verdict against Retrain (images: metrics/verdict.py; causal LMs:
metrics/causal_lm/verdicts.py), then the gap. Without it (the production case): the Retrain-free verdict
(the forget set indistinguishable from unseen data, or the forgotten classes no longer predicted) with the
utility kept: test accuracy within UTILITY_POINTS of the original's (images), utility at least UTILITY_SHARE
of the original's (causal LMs). The distance is 0 for a passing model and grows with how far the evidence is
from what passing needs; a search minimises cost among passing settings and distance among the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..metrics.causal_lm import verdicts as lm_verdicts
from ..metrics.finite import finite
from ..metrics.standalone import INDISTINGUISHABLE, NO_LONGER_PREDICTED, standalone_verdict
from ..metrics.summary import gap_to
from ..metrics.verdict import tolerances, verdict

UTILITY_POINTS = 2.0  # images: test accuracy (points) the model may lose against the original's
UTILITY_SHARE = lm_verdicts.UTILITY_SHARE  # causal LMs: the share of the original's utility it keeps
PASSING_WITHOUT_RETRAIN = (INDISTINGUISHABLE, NO_LONGER_PREDICTED)


@dataclass
class Judgement:
    passed: bool
    distance: float  # 0 when passed; in the evidence's own scale (points / 100, AUC, share)
    verdict: str
    reasons: list[str] = field(default_factory=list)


def _value(row: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = row.get(key)
    return float(value) if finite(value) else default


def judge_image(row: dict[str, Any], original: dict[str, Any], retrain: dict[str, Any] | None) -> Judgement:
    """An image trial's judgement: against Retrain where it ran, else the Retrain-free verdict and utility."""
    if retrain is not None:
        label, reasons = verdict(row, retrain, tolerances([retrain]))
        gap = gap_to(row, retrain)
        distance = 0.0 if label == "matches Retrain" else (gap if gap is not None else 1.0) / 100.0 + 0.01
        return Judgement(label == "matches Retrain", distance, label, reasons)
    label, reasons = standalone_verdict(row)
    drop = _value(original, "ta") - _value(row, "ta")
    kept = drop <= UTILITY_POINTS
    if not kept:
        reasons = [*reasons, f"TA {_value(row, 'ta'):.1f} more than {UTILITY_POINTS:g} points below the original's "
                             f"{_value(original, 'ta'):.1f}"]
    passed = label in PASSING_WITHOUT_RETRAIN and kept
    if passed:
        return Judgement(True, 0.0, label, reasons)
    if "class_forget_acc" in row:  # whole classes: how much of them is still predicted
        off = _value(row, "class_forget_acc", 100.0) / 100.0
    else:  # samples: how far the forget set is from unseen data of its classes
        off = abs(_value(row, "unseen_acc_gap", 100.0)) / 100.0 + abs(_value(row, "unseen_auc", 100.0) - 50.0) / 100.0
    return Judgement(False, off + max(0.0, drop - UTILITY_POINTS) / 100.0 + 0.01, label, reasons)


def judge_causal_lm(row: dict[str, Any], original: dict[str, Any], retrain: dict[str, Any] | None,
                    n_forget: int, n_holdout: int) -> Judgement:
    """A causal-LM trial's judgement: against Retrain where it ran, else the Retrain-free verdict and utility."""
    if retrain is not None:
        label, reasons = lm_verdicts.with_retrain(row, retrain, original)
        passed = label == lm_verdicts.MATCHES
        fq = _value(row, "forget_quality", 0.0)
        leak = abs(_value(row, "privleak", 100.0)) / 100.0
        return Judgement(passed, 0.0 if passed else (1.0 - fq) + leak + 0.01, label, reasons)
    label, reasons = lm_verdicts.without_retrain(row, n_forget, n_holdout, original)
    passed = label == INDISTINGUISHABLE
    if passed:
        return Judgement(True, 0.0, label, reasons)
    auc = _value(row, "mia_min_k_auc", 1.0)
    mu, ref = lm_verdicts.utility(row)[1], lm_verdicts.utility(original)[1]
    shortfall = max(0.0, UTILITY_SHARE - (mu / ref)) if finite(mu) and finite(ref) and ref > 0 else 0.0
    return Judgement(False, 2.0 * abs(auc - 0.5) + shortfall + 0.01, label, reasons)
