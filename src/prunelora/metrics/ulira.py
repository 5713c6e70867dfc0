"""U-LiRA (Hayes et al. 2024): a per-example likelihood-ratio test of "unlearned" against "never seen".

Population attacks ask whether the forget set as a whole looks like unseen data; U-LiRA asks it
of each example, with shadow models. For K shadow pairs, an original is trained on a random half
of the training data; the examples of the forget request in its half are its forget set; it is
unlearned by the method (the "unlearned" model) and, separately, retrained without them (the
"never seen" model). For each target example, Gaussians are fitted to its logit-scaled
confidence, log p_y - log(1 - p_y), under the unlearned models that forgot it and under the
retrained models; the likelihood ratio of a new observation says which it came from.

Evaluation is leave-one-pair-out: the Gaussians for pair k come from the other pairs, and the
test asks, for each example pair k forgot, whether k's unlearned or k's retrained model produced
the observation. Accuracy is that of the likelihood-ratio decision (ratio > 1: "unlearned"),
with AUC and the TPR at 1 % FPR; 50 % accuracy means the method is indistinguishable from
Retrain. With few shadow models a per-example variance is unreliable, so the variances are
pooled over examples (LiRA's fixed-variance variant); an example without an observation among
the other pairs takes the pooled mean.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .attacks import log_complement, log_softmax
from .finite import floor_logits


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y - log(1 - p_y) per sample, float64 and finite for any finite logits (LiRA's score)."""
    z = floor_logits(logits)
    rows = np.arange(len(labels))
    log_p = log_softmax(z)[rows, labels]
    log_q = np.maximum(log_complement(z)[rows, labels], -745.0)  # 1 - p_y underflows only when p_y is 1
    return log_p - log_q


def _gaussian_logpdf(x: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std)


def _fit(scores: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-example means over the observed entries (pooled mean where none) and the pooled std."""
    counts = seen.sum(axis=0)
    total = np.where(seen, scores, 0.0).sum(axis=0)
    pooled = total.sum() / max(1, counts.sum())
    means = np.where(counts > 0, total / np.maximum(counts, 1), pooled)
    resid = np.where(seen, scores - means[None, :], 0.0)
    dof = max(1, int(counts.sum()) - int((counts > 0).sum()))
    std = float(np.sqrt((resid ** 2).sum() / dof)) if counts.sum() > 1 else 1.0
    return means, max(std, 1e-6)


def ulira(unlearned: np.ndarray, retrained: np.ndarray, forgotten: np.ndarray) -> dict[str, float]:
    """The attack from K shadow pairs' scores on m target examples.

    unlearned, retrained: (K, m) logit-scaled confidences of each target under pair k's unlearned
    and retrained models; forgotten: (K, m) bool, whether pair k's original had the target in its
    half (so its unlearned model forgot it). Returns ulira_acc, ulira_auc, ulira_tpr_1fpr (%), and
    ulira_n (the number of decisions).
    """
    unlearned, retrained, forgotten = map(np.asarray, (unlearned, retrained, forgotten))
    k_pairs = len(forgotten)
    scores, truth = [], []
    for k in range(k_pairs):
        others = np.arange(k_pairs) != k
        mu_u, sd_u = _fit(unlearned[others], forgotten[others])
        mu_r, sd_r = _fit(retrained[others], np.ones_like(forgotten[others]))
        targets = forgotten[k]
        for observed, label in ((unlearned[k, targets], 1), (retrained[k, targets], 0)):
            ratio = (_gaussian_logpdf(observed, mu_u[targets], sd_u)
                     - _gaussian_logpdf(observed, mu_r[targets], sd_r))
            scores.append(ratio)
            truth.append(np.full(len(observed), label))
    score, label = np.concatenate(scores), np.concatenate(truth)
    if len(np.unique(label)) < 2:
        nan = float("nan")
        return {"ulira_acc": nan, "ulira_auc": nan, "ulira_tpr_1fpr": nan, "ulira_n": int(len(label))}
    fpr, tpr, _ = roc_curve(label, score)
    return {"ulira_acc": float(((score > 0) == (label == 1)).mean() * 100.0),
            "ulira_auc": float(roc_auc_score(label, score) * 100.0),
            "ulira_tpr_1fpr": float(tpr[fpr <= 0.01].max() * 100.0),
            "ulira_n": int(len(label))}


def balanced_membership(k_pairs: int, m: int, seed: int) -> np.ndarray:
    """(K, m) bool: each target in exactly half of the pairs (rounded), as in LiRA's shadow design."""
    rng = np.random.default_rng([seed, 0x11AA])
    order = rng.random((k_pairs, m)).argsort(axis=0)
    return order < k_pairs // 2 + (rng.random(m) < (k_pairs % 2) / 2)[None, :]
