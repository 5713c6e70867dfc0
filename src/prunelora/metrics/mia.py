"""Confidence-based membership inference (Liu et al. 2024, the paper's MIA-Efficacy).

An attacker learns to tell members (retain-train) from non-members (test-retain) from the
model's outputs, on a balanced shadow sample; MIA-Efficacy is the share of forget-train samples it
calls non-members. The attacker's accuracy on held-out shadow samples is reported beside it: an
efficacy from an attacker no better than chance says little (FINDINGS trap 8).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.svm import SVC


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def true_class_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Feature of the default attack: the probability given to the true class, shape (N, 1)."""
    if len(labels) == 0:
        return np.zeros((0, 1))
    probs = softmax(logits.astype(np.float64))
    return probs[np.arange(len(labels)), labels][:, None]


def balanced_shadow(n_members: int, n_nonmembers: int, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-sized random samples of member and non-member indices (at most cap each)."""
    n = min(n_members, n_nonmembers, cap)
    rng = np.random.default_rng(seed)
    return rng.choice(n_members, n, replace=False), rng.choice(n_nonmembers, n, replace=False)


def svc_attack() -> SVC:
    return SVC(C=3, gamma="auto", kernel="rbf")  # Liu et al.'s settings


def membership_attack(member: np.ndarray, nonmember: np.ndarray, target: np.ndarray, seed: int = 0,
                      cap: int = 1000, holdout: float = 0.2,
                      make_classifier: Callable[[], object] = svc_attack) -> dict[str, float]:
    """Fit an attacker on balanced features; report efficacy on target and accuracy on held-out shadow data.

    member, nonmember, target: (N, F) feature arrays. Efficacy = % of target predicted non-member.
    One attacker is fit on (1 - holdout) of the balanced shadow sample (at most `cap` per side):
    its accuracy on the rest says how good it is, and the same attacker labels the target (one
    fit, not two: an RBF SVC's cost grows with the square of its sample).
    """
    if len(member) == 0 or len(nonmember) == 0:
        return {"efficacy": float("nan"), "attack_acc": float("nan"), "holdout_n": 0}
    mi, ni = balanced_shadow(len(member), len(nonmember), cap, seed)
    x = np.concatenate([member[mi], nonmember[ni]]).astype(np.float64)
    y = np.concatenate([np.ones(len(mi)), np.zeros(len(ni))])
    order = np.random.default_rng(seed + 1).permutation(len(y))
    cut = max(2, int(len(y) * (1 - holdout)))
    train, test = order[:cut], order[cut:]
    if len(np.unique(y[train])) < 2:
        return {"efficacy": float("nan"), "attack_acc": float("nan"), "holdout_n": 0}
    attacker = make_classifier()
    attacker.fit(x[train], y[train])
    attack_acc = float((attacker.predict(x[test]) == y[test]).mean() * 100.0) if len(test) else float("nan")
    if len(target) == 0:
        return {"efficacy": float("nan"), "attack_acc": attack_acc, "holdout_n": len(test)}
    efficacy = float((attacker.predict(target.astype(np.float64)) == 0).mean() * 100.0)
    return {"efficacy": efficacy, "attack_acc": attack_acc, "holdout_n": len(test)}


def above_chance(attack_acc: float, holdout_n: int, alpha: float = 0.05) -> bool:
    """Whether an attacker's held-out accuracy is significantly above 50 % (one-sided binomial test).

    An efficacy read from an attacker at chance says nothing about forgetting: such an attack is
    reported as inconclusive and left out of the gap to Retrain.
    """
    if not holdout_n or not np.isfinite(attack_acc):
        return False
    from scipy.stats import binomtest

    correct = int(round(attack_acc / 100.0 * holdout_n))
    return bool(binomtest(correct, holdout_n, 0.5, alternative="greater").pvalue < alpha)


def mia_efficacy(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int = 0,
                 cap: int = 1000) -> dict[str, float]:
    """The paper's MIA-Efficacy: SVC on true-class confidence, retain-train vs test-retain, applied to forget-train."""
    features = {k: true_class_confidence(logits[k], labels[k]) for k in ("retain_train", "test_retain", "forget_train")}
    result = membership_attack(features["retain_train"], features["test_retain"], features["forget_train"], seed, cap)
    return {"mia_efficacy": result["efficacy"], "mia_attack_acc": result["attack_acc"]}
