"""Evidence that needs no Retrain: does the forget set now look like data the model never trained on?

Retrain is the field's yardstick, and exactly the run a team with a production model cannot afford.
What can be measured without it is the forget set against a held-out reference the model never
trained on, drawn from the same distribution: the test images of the same classes, weighted to the
forget set's class mix. A model that forgot the samples treats them as it treats that reference:

* accuracy on the forget set minus the reference's (``unseen_acc_gap``, with a 95 % interval);
* a per-example loss attack (``unseen_auc``): the probability that a forget sample has a lower loss
  than a reference sample (the AUC of telling them apart by loss; 50 = indistinguishable, above 50:
  the forget set is still fitted better than unseen data), with Hanley and McNeil's 95 % interval;
* the NeurIPS 2023 challenge's loss attack (metrics/challenge.py, against the same reference).

Whole classes have no reference of their own class (every image of it was forgotten), so a class
request reads the forgotten classes' accuracy on train and test (a class never trained on is never
predicted), the head's response (metrics/head.py: a masked head is caught) and, as figures beside
the verdict, the probe and relearn time. metrics/standalone.py turns these into a verdict.
"""
from __future__ import annotations

import math

import numpy as np

from .entry import Evidence, EvidenceInputs
from .outputs import per_sample_loss
from .spec import EVIDENCE, MetricSpec

Z95 = 1.959963984540054


def reference_weights(forget_labels: np.ndarray, unseen_labels: np.ndarray) -> np.ndarray:
    """Per reference sample, the weight that gives the reference the forget set's class mix (0 for classes
    the forget set does not hold): the two sides then differ only in whether the model trained on them."""
    weights = np.zeros(len(unseen_labels))
    for cls, count in zip(*np.unique(forget_labels, return_counts=True)):
        members = unseen_labels == cls
        if members.any():
            weights[members] = (count / len(forget_labels)) / members.sum()
    return weights


def effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of a weighted sample."""
    total = weights.sum()
    return float(total ** 2 / (weights ** 2).sum()) if total > 0 else 0.0


def weighted_auc(member_scores: np.ndarray, other_scores: np.ndarray, other_weights: np.ndarray) -> float:
    """P(member score > other score) + 0.5 P(tie), each other sample counted with its weight (%)."""
    if not len(member_scores) or other_weights.sum() <= 0:
        return float("nan")
    order = np.argsort(other_scores, kind="stable")
    sorted_scores, cumulative = other_scores[order], np.concatenate([[0.0], np.cumsum(other_weights[order])])
    below = cumulative[np.searchsorted(sorted_scores, member_scores, side="left")]
    upto = cumulative[np.searchsorted(sorted_scores, member_scores, side="right")]
    wins = below + 0.5 * (upto - below)
    return 100.0 * float(np.mean(wins) / other_weights.sum())


def auc_interval(auc_pct: float, n_members: float, n_others: float) -> tuple[float, float]:
    """Hanley and McNeil's (1982) 95 % interval of an AUC (%), clipped to [0, 100]."""
    a = auc_pct / 100.0
    if not math.isfinite(a) or n_members < 2 or n_others < 2:
        return float("nan"), float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_members - 1) * (q1 - a * a) + (n_others - 1) * (q2 - a * a)) / (n_members * n_others)
    half = Z95 * math.sqrt(max(var, 0.0)) * 100.0
    return max(0.0, auc_pct - half), min(100.0, auc_pct + half)


def proportion_interval(successes: float, n: float) -> tuple[float, float]:
    """Wilson's 95 % interval of a proportion (%)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def sample_evidence(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Forget set against the reference of its classes (a request of samples, not of classes)."""
    forget_y, unseen_y = labels["forget_train"], labels["test_retain"]
    weights = reference_weights(forget_y, unseen_y)
    n_forget, n_unseen = len(forget_y), effective_size(weights)
    nan = float("nan")
    out = {"forget_n": n_forget, "unseen_n": int((weights > 0).sum()), "unseen_acc": nan, "unseen_acc_gap": nan,
           "unseen_acc_gap_low": nan, "unseen_acc_gap_high": nan, "unseen_auc": nan, "unseen_auc_low": nan,
           "unseen_auc_high": nan}
    if n_forget == 0 or n_unseen == 0:
        return out
    forget_hit = logits["forget_train"].argmax(axis=1) == forget_y
    unseen_hit = logits["test_retain"].argmax(axis=1) == unseen_y
    p_forget = float(forget_hit.mean())
    p_unseen = float((weights * unseen_hit).sum() / weights.sum())
    gap = 100.0 * (p_forget - p_unseen)
    half = 100.0 * Z95 * math.sqrt(p_forget * (1 - p_forget) / n_forget + p_unseen * (1 - p_unseen) / n_unseen)
    # the model scores a member by how well it fits it: a lower loss reads "trained on"
    member = -per_sample_loss(logits["forget_train"], forget_y)
    keep = weights > 0
    other = -per_sample_loss(logits["test_retain"][keep], unseen_y[keep])
    auc = weighted_auc(member, other, weights[keep])
    low, high = auc_interval(auc, n_forget, n_unseen)
    out.update(unseen_acc=100.0 * p_unseen, unseen_acc_gap=gap, unseen_acc_gap_low=gap - half,
               unseen_acc_gap_high=gap + half, unseen_auc=auc, unseen_auc_low=low, unseen_auc_high=high)
    return out


def class_evidence(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """The forgotten classes' accuracy on train and test, with 95 % intervals: a class the model never
    trained on is never predicted (Retrain reads 0)."""
    out: dict[str, float] = {"forget_n": len(labels["forget_train"])}
    for split, key in (("forget_train", "class_forget_acc"), ("test_forget", "class_test_acc")):
        y = labels[split]
        hits = float((logits[split].argmax(axis=1) == y).sum()) if len(y) else 0.0
        out[key] = 100.0 * hits / len(y) if len(y) else float("nan")
        out[f"{key}_low"], out[f"{key}_high"] = proportion_interval(hits, len(y))
    return out


def unseen_evidence(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """The Retrain-free figures of a row: per sample for sample requests, per class for class requests."""
    if len(labels.get("test_forget", ())):
        return class_evidence(logits, labels)
    return sample_evidence(logits, labels)


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    return unseen_evidence(inputs.logits, inputs.labels)


SPECS = (
    MetricSpec("standalone_verdict", "Verdict without Retrain", unit="", best=None, section=EVIDENCE, text=True,
               detail="standalone_by_seed", note="standalone_reasons"),
    MetricSpec("unseen_acc", "Unseen acc (%)", best=None, section=EVIDENCE, digits=1,
               description="held-out accuracy of the forget set's classes, weighted to its class mix"),
    MetricSpec("unseen_acc_gap", "Forget - unseen acc", unit="points", best=None, section=EVIDENCE, digits=1,
               description="forget-set accuracy minus the held-out reference's (0: looks unseen)"),
    MetricSpec("unseen_auc", "Loss attack AUC (%)", best=None, section=EVIDENCE, digits=1,
               description="per-example loss attack, forget set vs held-out reference (50: indistinguishable)"),
    MetricSpec("class_forget_acc", "Forgotten class acc, train (%)", best=None, digits=1),
    MetricSpec("class_test_acc", "Forgotten class acc, test (%)", best=None, digits=1),
)

ENTRY = Evidence("unseen", _compute, SPECS, timing="attacks",
                 prefixes=("unseen_", "class_forget_acc", "class_test_acc", "forget_n"))
