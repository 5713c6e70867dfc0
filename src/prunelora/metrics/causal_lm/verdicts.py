"""A verdict per unlearned language model, with Retrain (the exact reference) and without it.

With Retrain: "matches Retrain" when TOFU's forget quality does not reject Retrain's truth-ratio
distribution (p >= FQ_P), MUSE's PrivLeak is within PRIVLEAK of zero, and the model keeps UTILITY_SHARE of
Retrain's model utility; else "differs from Retrain" with the failed tests. Without Retrain (a user's real
request): the Min-K % attack's AUC, forget (members) vs holdout (never trained on), with Hanley and
McNeil's 95 % interval: "indistinguishable from unseen data" when the interval holds 50 % and lies within
AUC_BAND of it, "still recognised" above, "over-forgets" below (unlearned text looks less familiar than
text never seen: itself a signal), "inconclusive: too few samples" under MIN_SAMPLES a side.
"""
from __future__ import annotations

from typing import Any

from ..unseen import auc_interval

FQ_P = 0.05
PRIVLEAK = 20.0  # percent
UTILITY_SHARE = 0.9
AUC_BAND = 10.0  # points from 50
MIN_SAMPLES = 30

THRESHOLDS = {"forget_quality_p": FQ_P, "privleak_pct": PRIVLEAK, "utility_share_of_retrain": UTILITY_SHARE,
              "auc_band_pts": AUC_BAND, "min_samples": MIN_SAMPLES}


def with_retrain(row: dict[str, Any], retrain: dict[str, Any]) -> tuple[str, list[str]]:
    reasons = []
    fq = row.get("forget_quality")
    if fq is None:
        reasons.append("no truth ratios (the data has no paraphrased/perturbed answers)")
    elif fq < FQ_P:
        reasons.append(f"forget quality {fq:.2g} < {FQ_P}: truth ratios unlike Retrain's")
    leak = row.get("privleak")
    if leak is not None and abs(leak) > PRIVLEAK:
        reasons.append(f"PrivLeak {leak:+.1f} % beyond +-{PRIVLEAK:g} %")
    mu, ref = row.get("model_utility"), retrain.get("model_utility")
    if mu is not None and ref is not None and mu < UTILITY_SHARE * ref:
        reasons.append(f"model utility {mu:.3f} < {UTILITY_SHARE:g} x Retrain's {ref:.3f}")
    return ("matches Retrain" if not reasons else "differs from Retrain"), reasons


def without_retrain(row: dict[str, Any], n_forget: int, n_holdout: int) -> tuple[str, list[str]]:
    auc = row.get("mia_min_k_auc")
    if auc is None:
        return "not measured", ["no holdout examples: give --holdout"]
    if min(n_forget, n_holdout) < MIN_SAMPLES:
        return "inconclusive: too few samples", [f"{min(n_forget, n_holdout)} examples on one side (< {MIN_SAMPLES})"]
    pct = 100.0 * auc
    low, high = auc_interval(pct, n_forget, n_holdout)
    span = f"Min-K % AUC {pct:.1f} % [{low:.1f}, {high:.1f}]"
    if low > 50.0:
        return "still recognised", [f"{span}: the forget set is told from unseen text"]
    if high < 50.0:
        return "over-forgets", [f"{span}: the forget set looks less familiar than unseen text"]
    if low >= 50.0 - AUC_BAND and high <= 50.0 + AUC_BAND:
        return "indistinguishable from unseen data", [span]
    return "inconclusive: too few samples", [f"{span}: the interval reaches beyond +-{AUC_BAND:g} points"]
