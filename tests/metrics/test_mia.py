"""The paper's MIA-Efficacy (SVC on true-class confidence) on hand-made logits."""
from __future__ import annotations

import math

import numpy as np
import pytest

from prunelora.metrics.mia import balanced_shadow, membership_attack, mia_efficacy, true_class_confidence

K = 10


def logits_with_confidence(conf: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logits whose softmax gives probability conf to the true class, the rest spread evenly."""
    conf = np.clip(conf, 1e-6, 1 - 1e-6)
    rest = (1 - conf) / (K - 1)
    logits = np.tile(np.log(rest)[:, None], (1, K))
    logits[np.arange(len(labels)), labels] = np.log(conf)
    return logits


def make_split(n, center, spread, rng):
    labels = rng.integers(0, K, n)
    conf = np.clip(center + rng.uniform(-spread, spread, n), 0.0, 1.0)
    return logits_with_confidence(conf, labels), labels


def separable(forget_center, seed=0, n=150):
    rng = np.random.default_rng(seed)
    logits, labels = {}, {}
    logits["retain_train"], labels["retain_train"] = make_split(n, 0.99, 0.009, rng)  # members: ~1
    logits["test_retain"], labels["test_retain"] = make_split(n, 0.10, 0.01, rng)  # non-members: ~0.1
    logits["forget_train"], labels["forget_train"] = make_split(40, forget_center, 0.005, rng)
    return logits, labels


def test_true_class_confidence():
    labels = np.array([2, 0])
    logits = logits_with_confidence(np.array([0.7, 0.25]), labels)
    np.testing.assert_allclose(true_class_confidence(logits, labels)[:, 0], [0.7, 0.25], rtol=1e-9)
    uniform = true_class_confidence(np.zeros((3, 4)), np.array([0, 1, 3]))
    assert uniform.shape == (3, 1)
    np.testing.assert_allclose(uniform, 0.25)


def test_forgotten_samples_look_like_non_members():
    logits, labels = separable(forget_center=0.1)
    result = mia_efficacy(logits, labels, seed=0, cap=2000)
    assert result["mia_efficacy"] == 100.0
    assert result["mia_attack_acc"] >= 95.0


def test_remembered_samples_look_like_members():
    logits, labels = separable(forget_center=0.995)
    result = mia_efficacy(logits, labels, seed=0, cap=2000)
    assert result["mia_efficacy"] == 0.0
    assert result["mia_attack_acc"] >= 95.0


def test_half_forgotten_gives_half_efficacy():
    logits, labels = separable(forget_center=0.1)
    labels["forget_train"] = np.random.default_rng(3).integers(0, K, 40)
    conf = np.r_[np.full(20, 0.995), np.full(20, 0.1)]  # 20 remembered, 20 forgotten
    logits["forget_train"] = logits_with_confidence(conf, labels["forget_train"])
    assert mia_efficacy(logits, labels, seed=0)["mia_efficacy"] == 50.0


def test_indistinguishable_members_give_chance_attack_accuracy():
    rng = np.random.default_rng(0)
    logits, labels = {}, {}
    for k, n in (("retain_train", 800), ("test_retain", 800), ("forget_train", 50)):
        logits[k], labels[k] = make_split(n, 0.5, 0.45, rng)  # the same distribution for everyone
    result = mia_efficacy(logits, labels, seed=0, cap=2000)
    assert 35.0 <= result["mia_attack_acc"] <= 65.0
    assert 0.0 <= result["mia_efficacy"] <= 100.0


def test_seeded_and_capped():
    logits, labels = separable(forget_center=0.5, n=300)
    a = mia_efficacy(logits, labels, seed=4, cap=50)
    b = mia_efficacy(logits, labels, seed=4, cap=50)
    assert a == b
    members, nonmembers = balanced_shadow(300, 120, cap=50, seed=0)
    assert len(members) == len(nonmembers) == 50
    assert len(set(members.tolist())) == 50 and members.max() < 300 and nonmembers.max() < 120
    members, nonmembers = balanced_shadow(300, 120, cap=2000, seed=0)
    assert len(members) == len(nonmembers) == 120  # balanced: the smaller side decides


def test_empty_sets_give_nan():
    empty = np.zeros((0, 1))
    some = np.random.default_rng(0).uniform(size=(10, 1))
    for member, nonmember in ((empty, some), (some, empty)):
        result = membership_attack(member, nonmember, some)
        assert math.isnan(result["efficacy"]) and math.isnan(result["attack_acc"])
    # no forget samples: no efficacy, but the attacker itself can still be scored
    result = membership_attack(some, some[::-1] * 0.5, empty)
    assert math.isnan(result["efficacy"]) and 0.0 <= result["attack_acc"] <= 100.0


def test_efficacy_counts_targets_predicted_non_member():
    class Threshold:
        def fit(self, x, y):
            return self

        def predict(self, x):
            return (x[:, 0] > 0.5).astype(float)  # 1 = member

    member = np.full((20, 1), 0.9)
    nonmember = np.full((20, 1), 0.1)
    target = np.array([[0.9], [0.1], [0.2], [0.3]])
    result = membership_attack(member, nonmember, target, make_classifier=Threshold)
    assert result["efficacy"] == pytest.approx(75.0)
    assert result["attack_acc"] == pytest.approx(100.0)
