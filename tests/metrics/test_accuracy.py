"""UA, RA, TA, forget-test accuracy and per-sample losses on hand-made logits."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prunelora.metrics.accuracy import accuracy, unlearning_metrics
from prunelora.metrics.evaluate import SPLITS, collect_logits, metrics_from_logits, per_sample_loss, predict


def one_hot_logits(predicted: list[int], k: int = 4) -> np.ndarray:
    out = np.zeros((len(predicted), k), dtype=np.float32)
    out[np.arange(len(predicted)), predicted] = 5.0
    return out


def test_accuracy_in_percent():
    assert accuracy(one_hot_logits([0, 1, 2, 3]), np.array([0, 1, 2, 0])) == 75.0
    assert accuracy(one_hot_logits([2]), np.array([2])) == 100.0
    assert accuracy(one_hot_logits([1, 1, 1]), np.array([0, 2, 3])) == 0.0
    assert accuracy(torch.tensor(one_hot_logits([3, 0])), torch.tensor([3, 1])) == 50.0
    assert math.isnan(accuracy(np.zeros((0, 4)), np.zeros(0, dtype=int)))


def test_unlearning_metrics_known_values():
    labels = {
        "forget_train": np.array([3, 3, 3, 3]),
        "retain_train": np.array([0, 1, 2, 0, 1]),
        "test_retain": np.array([0, 1, 2, 1]),
        "test_forget": np.array([3, 3]),
    }
    logits = {
        "forget_train": one_hot_logits([3, 0, 1, 2]),  # 1 of 4 still right: UA = 75
        "retain_train": one_hot_logits([0, 1, 2, 0, 2]),  # 4 of 5: RA = 80
        "test_retain": one_hot_logits([0, 2, 2, 2]),  # 2 of 4: TA = 50
        "test_forget": one_hot_logits([3, 0]),  # 1 of 2: 50
    }
    m = unlearning_metrics(logits, labels)
    assert m == {"ua": 75.0, "ra": 80.0, "ta": 50.0, "forget_test_acc": 50.0}


def test_ua_is_100_when_the_forget_class_is_never_predicted():
    labels = {k: np.array([1, 1]) for k in SPLITS}
    logits = {k: one_hot_logits([0, 2]) for k in SPLITS}
    m = unlearning_metrics(logits, labels)
    assert m["ua"] == 100.0 and m["ra"] == 0.0 and m["forget_test_acc"] == 0.0


def test_per_sample_loss_equals_hand_computed_cross_entropy():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [10.0, -10.0, 0.0]])
    labels = np.array([0, 2, 0])
    expected = np.array([
        -math.log(math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(3))),
        math.log(3.0),
        -math.log(math.exp(10) / (math.exp(10) + math.exp(-10) + math.exp(0))),
    ])
    np.testing.assert_allclose(per_sample_loss(logits, labels), expected, rtol=1e-12)


def test_per_sample_loss_matches_torch_and_is_stable_for_large_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10)).astype(np.float32) * 5
    labels = rng.integers(0, 10, 50)
    ours = per_sample_loss(logits, labels)
    ref = F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(labels), reduction="none").numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    big = per_sample_loss(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    np.testing.assert_allclose(big, [0.0, 1000.0], atol=1e-9)
    assert per_sample_loss(np.zeros((0, 3)), np.zeros(0, dtype=int)).shape == (0,)


class _Fixed(torch.nn.Module):
    """Predicts label (first pixel * 255) mod k, as one-hot logits."""

    def __init__(self, k=10):
        super().__init__()
        self.k = k

    def forward(self, x):
        idx = (x[:, 0, 0, 0] * 255).round().long() % self.k
        return F.one_hot(idx, self.k).float() * 4


def test_collect_logits_and_metrics_from_logits_on_a_model(digits_splits):
    model = _Fixed().train()
    logits, labels = collect_logits(model, digits_splits, batch_size=7)
    assert model.training  # the mode is restored
    assert set(logits) == set(labels) == set(SPLITS)
    for k in SPLITS:
        data = digits_splits.named()[k]
        assert logits[k].shape == (len(data), 10)
        np.testing.assert_array_equal(labels[k], data.labels.numpy())
        np.testing.assert_array_equal(logits[k], predict(model, data, 1000))
    metrics = metrics_from_logits(logits, labels, seed=0, mia_cap=100)
    for key in ("ua", "ra", "ta", "forget_test_acc", "mia_efficacy", "mia_attack_acc"):
        assert key in metrics
    assert metrics["ra"] == pytest.approx(accuracy(logits["retain_train"], labels["retain_train"]))
