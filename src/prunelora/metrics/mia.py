"""Confidence-based membership inference (Liu et al. 2024, the paper's MIA-Efficacy).

An attacker learns to tell members (retain-train) from non-members (test-retain) from the
model's outputs, on a balanced shadow sample; MIA-Efficacy is the share of forget-train samples it
calls non-members. The attacker's accuracy on held-out shadow samples is reported beside it: an
efficacy from an attacker no better than chance says little (docs/design.md, trap 8).
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.svm import SVC

from .finite import require_finite
from .spec import MIA_MAX_PER_SIDE


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
                      cap: int = MIA_MAX_PER_SIDE, holdout: float = 0.2,
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
    x = require_finite(np.concatenate([member[mi], nonmember[ni]]).astype(np.float64), "the attack's shadow features")
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
    target = require_finite(target.astype(np.float64), "the attack's target features")
    efficacy = float((attacker.predict(target) == 0).mean() * 100.0)
    return {"efficacy": efficacy, "attack_acc": attack_acc, "holdout_n": len(test)}


PROTOCOLS = ("balanced", "liu")


def accuracy_interval(accs: list[float], holdout_n: int, z: float = 1.96) -> tuple[float, float]:
    """A 95 % interval for an attacker's accuracy (%) from its held-out accuracy over shadow draws.

    The draws share their samples, so their spread alone understates the uncertainty: the standard
    error is the larger of (std over draws / sqrt(draws)) and the binomial error of one draw's
    held-out sample, 50 / sqrt(n) points at chance. NaN bounds when nothing was held out.
    """
    values = np.array([a for a in accs if np.isfinite(a)], dtype=float)
    if not holdout_n or len(values) == 0:
        return float("nan"), float("nan")
    spread = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    se = max(float(spread), 50.0 / np.sqrt(holdout_n))
    mean = float(values.mean())
    return mean - z * se, mean + z * se


def above_chance(low: float) -> bool:
    """Whether an attacker is clearly better than chance: its interval's lower bound lies above 50 %.

    An efficacy read from an attacker whose interval includes 50 % says nothing about forgetting:
    such an attack is reported as inconclusive and left out of the gap to Retrain.
    """
    return bool(np.isfinite(low) and low > 50.0)


def repeated_attack(member: np.ndarray, nonmember: np.ndarray, target: np.ndarray, seed: int = 0,
                    cap: int = MIA_MAX_PER_SIDE, draws: int = 5,
                    make_classifier: Callable[[], object] = svc_attack) -> dict[str, float]:
    """The balanced attack over `draws` seeded shadow draws: mean and spread of efficacy and accuracy.

    Returns efficacy, efficacy_spread, attack_acc, attack_acc_spread (std over draws), acc_low,
    acc_high (the accuracy's interval), conclusive and holdout_n (per draw).
    """
    def draw(d: int) -> dict[str, float]:
        return membership_attack(member, nonmember, target, seed=seed * 1009 + d, cap=cap,
                                 make_classifier=make_classifier)

    return summarise(in_parallel(draw, range(max(1, draws))))


def in_parallel(task: Callable[[int], dict[str, float]], items) -> list[dict[str, float]]:
    """task(item) for every item, in order, on as many threads as torch may use (the process's share of the
    cores): libsvm and BLAS release the GIL, so the draws' fits run side by side (2 threads: 0.29 s where
    one took 0.57 s for eight 2000-sample RBF SVCs). Every draw is seeded by its index: the same results."""
    import torch

    items = list(items)
    workers = min(len(items), max(1, torch.get_num_threads()))
    if workers == 1:
        return [task(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(task, items))


def summarise(results: list[dict[str, float]]) -> dict[str, float]:
    """Mean and spread over repeated attacks, with the accuracy's interval and the verdict on chance."""
    def stats(key: str) -> tuple[float, float]:
        values = np.array([r[key] for r in results], dtype=float)
        if not np.isfinite(values).any():
            return float("nan"), float("nan")
        values = values[np.isfinite(values)]
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    efficacy, efficacy_spread = stats("efficacy")
    acc, acc_spread = stats("attack_acc")
    holdout_n = int(min(r["holdout_n"] for r in results))
    low, high = accuracy_interval([r["attack_acc"] for r in results], holdout_n)
    return {"efficacy": efficacy, "efficacy_spread": efficacy_spread, "attack_acc": acc,
            "attack_acc_spread": acc_spread, "acc_low": low, "acc_high": high,
            "conclusive": above_chance(low), "holdout_n": holdout_n}


def liu_attack(member: np.ndarray, nonmember: np.ndarray, target: np.ndarray, seed: int = 0, cap: int = MIA_MAX_PER_SIDE,
               draws: int = 5, make_classifier: Callable[[], object] = svc_attack) -> dict[str, float]:
    """The field's reference protocol (Unlearn-Sparse, evaluation/SVC_MIA.py, as main_forget.py calls it).

    The attacker is fit on the first N members (N = the number of non-members; all members when
    fewer) against every non-member, with no hold-out, and the efficacy is the share of the
    target it calls non-members: figures compare with published tables. That protocol says
    nothing of the attacker's own accuracy, so a twin attacker measures it on the same shadow
    set (balanced draws with hold-out, at most `cap` per side), reported beside the efficacy.
    """
    n = min(len(member), len(nonmember))
    if n == 0:
        return summarise([{"efficacy": float("nan"), "attack_acc": float("nan"), "holdout_n": 0}])
    shadow_members = member[:len(nonmember)]
    x = require_finite(np.concatenate([shadow_members, nonmember]).astype(np.float64), "the attack's shadow features")
    target = require_finite(target.astype(np.float64), "the attack's target features")
    y = np.concatenate([np.ones(len(shadow_members)), np.zeros(len(nonmember))])
    attacker = make_classifier()
    attacker.fit(x, y)
    twin = repeated_attack(shadow_members, nonmember, target[:0], seed, cap, draws, make_classifier)
    efficacy = float((attacker.predict(target) == 0).mean() * 100.0) if len(target) else float("nan")
    return {**twin, "efficacy": efficacy, "efficacy_spread": 0.0}


def mia_efficacy(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int = 0,
                 cap: int = MIA_MAX_PER_SIDE) -> dict[str, float]:
    """The paper's MIA-Efficacy: SVC on true-class confidence, retain-train vs test-retain, applied to forget-train."""
    features = {k: true_class_confidence(logits[k], labels[k]) for k in ("retain_train", "test_retain", "forget_train")}
    result = membership_attack(features["retain_train"], features["test_retain"], features["forget_train"], seed, cap)
    return {"mia_efficacy": result["efficacy"], "mia_attack_acc": result["attack_acc"]}
