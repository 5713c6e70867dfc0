"""A suite of membership-inference attacks, each reported with the attacker's own accuracy.

The paper's MIA-Efficacy (Liu et al. 2024) is one attack: an SVC on the true-class confidence,
trained to tell members (retain-train) from non-members (test-retain) and applied to the forget set;
the efficacy is the share of forget samples it calls non-members. One attack is a thin basis for a
claim, and an efficacy read without knowing whether the attacker could tell anything apart is
uninterpretable. So this module runs several attacks on the same balanced shadow sample and
reports, for each, both the efficacy and the accuracy of a twin attacker on held-out shadow data
(50 = chance: an efficacy from such an attacker says nothing about forgetting).

Why it exists (docs/design.md):

* On class-wise forgetting the confidence MIA saturates at 100 for every method (a forgotten class
  gets a true-class confidence far below any member's), so it cannot rank methods there; the
  entropy-based and full-vector attacks look at the rest of the output distribution.
* The seed's loss-based logistic-regression attacker (the attack of the paper's original code)
  learned nothing: it stayed at majority-class accuracy and read efficacy 0.0 for a model that had
  fully forgotten. It fit raw per-sample losses; when they are small (~1e-3) the weight needed to
  separate them is one the L2 penalty of an unscaled LR does not allow (reproduced in the tests).
  Here the loss is standardised first, and the attack accuracy is reported beside the efficacy.

Attacks (name -> feature, classifier):

* ``svc_confidence``: true-class probability, SVC (the paper's MIA-Efficacy);
* ``svc_entropy``: Shannon entropy of the softmax, SVC;
* ``svc_m_entropy``: modified entropy of Song & Mittal 2021, SVC;
* ``svc_prob``: the full softmax vector, SVC;
* ``loss_lr``: per-sample cross-entropy, StandardScaler + LogisticRegression.

SVCs use Liu et al.'s settings, ``SVC(C=3, gamma="auto", kernel="rbf")``. Every attack goes through
:func:`prunelora.metrics.mia.membership_attack` with the same seed and cap, hence the same balanced
shadow indices (:func:`prunelora.metrics.mia.balanced_shadow`) and the same held-out split.

Modified entropy (Song & Mittal 2021, "Systematic evaluation of privacy risks of machine learning
models", eq. for Mentr)::

    Mentr(F(x), y) = -(1 - F(x)_y) log F(x)_y - sum_{i != y} F(x)_i log(1 - F(x)_i)

The public implementation of Liu et al. (``evaluation/SVC_MIA.py``) differs from this in two ways:
it takes ``log(p)`` where ``log(1 - p)`` is meant for the other classes, and it indexes
``[:, labels]`` (every row's columns for every label in the batch) instead of each row's own label.
This module follows the definition. Logarithms are clipped below at ``log(1e-30)`` as in Song &
Mittal's code (equivalently: probabilities and their complements are clipped to ``[1e-30, 1]``);
``1 - p`` of the top class is computed from the logits rather than as ``1 - p`` in float64, since
``1 - 1e-30`` is 1.0 in float64 and the naive complement becomes 0 as soon as ``p > 1 - 1e-16``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .entry import Evidence, EvidenceInputs
from .finite import floor_logits, require_finite
from .mia import liu_attack, repeated_attack, svc_attack, true_class_confidence
from .outputs import per_sample_loss
from .spec import MIA_MAX_PER_SIDE, spec_of

__all__ = ["ATTACKS", "DEFAULT_ATTACK", "EPS", "Attack", "AttackKeys", "attack_keys", "attack_suite", "attacks_in", "confidence", "entropy", "loss", "loss_lr_attack",
           "modified_entropy", "prob"]

EPS = 1e-30  # floor for probabilities inside logarithms (Song & Mittal's small_value)
_LOG_EPS = math.log(EPS)

MEMBERS, NONMEMBERS, TARGET = "retain_train", "test_retain", "forget_train"

FeatureFn = Callable[[np.ndarray, np.ndarray], np.ndarray]




def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p, float64, exact to rounding for any finite logits (no log of an underflowed 0)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def log_complement(logits: np.ndarray) -> np.ndarray:
    """log(1 - p_k) for every class, float64, without forming 1 - p where p is close to 1.

    Only the top class can have p > 1/2. For it, with S = sum_{j != top} exp(z_j - z_top),
    1 - p_top = S / (1 + S), so log(1 - p_top) = log S - log1p(S). For the others p <= 1/2 and
    log1p(-p) is accurate. Where S underflows to 0 the result is -inf (clipped by the callers).
    """
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(z))
    top = z.argmax(axis=1)
    z = z - z[rows, top][:, None]
    e = np.exp(z)
    e[rows, top] = 0.0
    s = e.sum(axis=1)
    log_norm = np.log1p(s)
    with np.errstate(divide="ignore"):  # log1p(-1) and log(0) give -inf, as meant
        out = np.log1p(-np.exp(z - log_norm[:, None]))
        out[rows, top] = np.log(s) - log_norm
    return out


def _empty(n_features: int) -> np.ndarray:
    return np.zeros((0, n_features), dtype=np.float64)


def confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """True-class probability, (N, 1): the feature of the paper's MIA-Efficacy."""
    if len(labels) == 0:
        return _empty(1)
    return true_class_confidence(np.asarray(logits), np.asarray(labels)).astype(np.float64)


def entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Shannon entropy of the softmax, -sum_k p_k log p_k, (N, 1); 0 log 0 taken as 0. Labels unused."""
    if len(labels) == 0:
        return _empty(1)
    log_p = log_softmax(logits)
    return -(np.exp(log_p) * log_p).sum(axis=1, keepdims=True)


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal's modified entropy, (N, 1): -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i).

    Logarithms are floored at log(1e-30) (probabilities and complements clipped to [1e-30, 1]),
    so the feature is finite and at most about 2 * 69.08 for any finite logits.
    """
    if len(labels) == 0:
        return _empty(1)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    log_p = log_softmax(logits)
    log_q = log_complement(logits)  # log(1 - p), unclipped
    p, q = np.exp(log_p), np.exp(log_q)
    # Per class: weight p_i on -log(1 - p_i); for the row's own label: weight 1 - p_y on -log p_y.
    weight = p.copy()
    weight[rows, labels] = q[rows, labels]
    log_term = log_q.copy()
    log_term[rows, labels] = log_p[rows, labels]
    return -(weight * np.maximum(log_term, _LOG_EPS)).sum(axis=1, keepdims=True)


def prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The full softmax vector, (N, K). Labels unused."""
    if len(labels) == 0:
        return _empty(np.shape(logits)[1] if np.ndim(logits) == 2 else 0)
    return np.exp(log_softmax(logits))


def loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy, (N, 1) (outputs.per_sample_loss)."""
    if len(labels) == 0:
        return _empty(1)
    return per_sample_loss(np.asarray(logits), np.asarray(labels)).astype(np.float64)[:, None]


def loss_lr_attack() -> Pipeline:
    """Logistic regression on the standardised loss (unscaled, the penalty kept it at chance)."""
    return make_pipeline(StandardScaler(), LogisticRegression())


class Attack(NamedTuple):
    features: FeatureFn
    make_classifier: Callable[[], object]
    label: str = ""  # how tables and the report name it


ATTACKS: dict[str, Attack] = {
    "svc_confidence": Attack(confidence, svc_attack, "Confidence SVC (paper)"),
    "svc_entropy": Attack(entropy, svc_attack, "SVC on entropy"),
    "svc_m_entropy": Attack(modified_entropy, svc_attack, "SVC on modified entropy"),
    "svc_prob": Attack(prob, svc_attack, "SVC on probabilities"),
    "loss_lr": Attack(loss, loss_lr_attack, "Logistic regression on loss"),
}
DEFAULT_ATTACK = "svc_confidence"  # the paper's MIA-Efficacy: its keys are the results contract's


class AttackKeys(NamedTuple):
    """Where one attack's figures sit in a results row."""

    name: str
    label: str
    efficacy: str  # % of the forget set called non-members (mean over shadow draws)
    acc: str  # the attacker's held-out accuracy (mean over draws)
    conclusive: str  # whether that accuracy's interval lies above 50 %


def attack_keys(name: str) -> AttackKeys:
    """The row keys of a registered attack (the paper's default keeps mia_efficacy / mia_attack_acc)."""
    label = ATTACKS[name].label if name in ATTACKS else name.replace("_", " ")
    if name == DEFAULT_ATTACK:
        return AttackKeys(name, label, "mia_efficacy", "mia_attack_acc", "mia_attack_conclusive")
    return AttackKeys(name, label, f"mia_{name}", f"mia_{name}_acc", f"mia_{name}_conclusive")


def attacks_in(rows: list[dict]) -> list[AttackKeys]:
    """The registered attacks whose efficacy the rows carry, the paper's default first."""
    present = {k for r in rows for k in r}
    return [keys for keys in map(attack_keys, ATTACKS) if keys.efficacy in present]


def attack_suite(logits: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], seed: int = 0,
                 cap: int = MIA_MAX_PER_SIDE, attacks: Mapping[str, Attack] | None = None, draws: int = 5,
                 protocol: str = "balanced") -> dict[str, float]:
    """Run every attack: members retain_train, non-members test_retain, target forget_train.

    protocol "balanced" (default): each attack is fit on a balanced shadow sample (at most `cap`
    per side) with 20 % held out, over `draws` seeded draws; "liu": the field's reference protocol
    (:func:`prunelora.metrics.mia.liu_attack`). For each attack (keys from :func:`attack_keys`):
    the efficacy (% of forget_train called non-member; mean over draws) and its `_spread` (std over
    draws), the attacker's held-out accuracy with `_spread`, `_low` and `_high` (its interval), and
    whether the attack is conclusive (the interval lies above 50 %); ``mia_holdout_n`` is the
    held-out size of one draw. Deterministic for a fixed seed; an empty split gives NaN values, outputs that
    are not finite (-inf aside: a masked class) a UserError naming the split.
    """
    run = {"balanced": repeated_attack, "liu": liu_attack}[protocol]
    out: dict[str, float] = {}
    logits = {k: require_finite(floor_logits(v), f"the model's outputs on {k}") for k, v in logits.items()}
    for name, attack in (ATTACKS if attacks is None else attacks).items():
        feats = [attack.features(logits[k], labels[k]) for k in (MEMBERS, NONMEMBERS, TARGET)]
        result = run(*feats, seed=seed, cap=cap, draws=draws, make_classifier=attack.make_classifier)
        keys = attack_keys(name)
        out[keys.efficacy] = result["efficacy"]
        out[f"{keys.efficacy}_spread"] = result["efficacy_spread"]
        out[keys.acc] = result["attack_acc"]
        out[f"{keys.acc}_spread"] = result["attack_acc_spread"]
        out[f"{keys.acc}_low"] = result["acc_low"]
        out[f"{keys.acc}_high"] = result["acc_high"]
        out[keys.conclusive] = result["conclusive"]
        out["mia_holdout_n"] = result["holdout_n"]
    return out


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    return attack_suite(inputs.logits, inputs.labels, inputs.seed, inputs.mia_cap, draws=inputs.evidence.mia_draws,
                        protocol=inputs.evidence.mia_protocol)


# Every attack's keys start with mia_ (attack_keys); the paper's two are declared in spec.py.
ENTRY = Evidence("attacks", _compute, (spec_of("mia_efficacy"), spec_of("mia_attack_acc")), timing="attacks",
                 prefixes=("mia_",))
