"""Evidence without Retrain (metrics/unseen.py) and its verdict (metrics/standalone.py), on hand-built cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunelora.metrics.evaluate import metrics_from_logits
from prunelora.metrics.standalone import (
    HIDDEN_IN_HEAD,
    INDISTINGUISHABLE,
    NO_LONGER_PREDICTED,
    OVER_FORGETS,
    STILL_RECOGNISED,
    TOO_FEW,
    add_standalone_verdicts,
    standalone_verdict,
)
from prunelora.metrics.unseen import auc_interval, proportion_interval, reference_weights, weighted_auc


def test_weighted_auc_is_the_mann_whitney_probability():
    members, others = np.array([3.0, 1.0, 2.0]), np.array([0.0, 2.0, 5.0, 1.0])
    pairs = [(1.0 if m > o else 0.5 if m == o else 0.0) for m in members for o in others]
    assert weighted_auc(members, others, np.ones(4)) == pytest.approx(100 * np.mean(pairs))
    # a weight of 2 counts a reference sample twice
    doubled = [(1.0 if m > o else 0.5 if m == o else 0.0) for m in members for o in [*others, others[0]]]
    assert weighted_auc(members, others, np.array([2.0, 1, 1, 1])) == pytest.approx(100 * np.mean(doubled))


def test_reference_weights_give_the_forget_sets_class_mix():
    forget = np.array([0, 0, 0, 1])
    unseen = np.array([0, 1, 1, 1, 2])
    w = reference_weights(forget, unseen)
    assert w[unseen == 2].sum() == 0
    assert w[unseen == 0].sum() == pytest.approx(0.75) and w[unseen == 1].sum() == pytest.approx(0.25)


def test_intervals_cover_their_estimate_and_shrink_with_more_samples():
    low, high = proportion_interval(50, 100)
    assert low < 50 < high and high - low == pytest.approx(19.2, abs=0.5)  # Wilson at n = 100
    narrow = auc_interval(60.0, 1000, 1000)
    wide = auc_interval(60.0, 50, 50)
    assert wide[0] < narrow[0] < 60 < narrow[1] < wide[1]


def _logits(labels: np.ndarray, correct: np.ndarray, margin: np.ndarray, classes: int = 4) -> np.ndarray:
    """Logits whose argmax is the label where `correct`, with the label's logit `margin` above the rest."""
    out = np.zeros((len(labels), classes), dtype=np.float32)
    wrong = (labels + 1) % classes
    out[np.arange(len(labels)), np.where(correct, labels, wrong)] = margin
    return out


def _split_logits(forget_correct, forget_margin, unseen_correct, unseen_margin, rng, n=400, classes=4):
    fy, uy, ry = (rng.integers(0, classes, n) for _ in range(3))
    logits = {"forget_train": _logits(fy, forget_correct, forget_margin, classes),
              "test_retain": _logits(uy, unseen_correct, unseen_margin, classes),
              "retain_train": _logits(ry, np.ones(n, bool), np.full(n, 6.0), classes),
              "test_forget": np.zeros((0, classes), np.float32)}
    labels = {"forget_train": fy, "test_retain": uy, "retain_train": ry, "test_forget": np.zeros(0, np.int64)}
    return logits, labels


def _row(logits, labels) -> dict:
    return metrics_from_logits(logits, labels, seed=0, mia_cap=200)


def test_a_forget_set_fitted_better_than_unseen_data_is_still_recognised():
    rng = np.random.default_rng(0)
    n = 400
    logits, labels = _split_logits(np.ones(n, bool), rng.uniform(5, 8, n), rng.random(n) < 0.8,
                                   rng.uniform(0.5, 4, n), rng)
    row = _row(logits, labels)
    assert row["unseen_acc_gap"] > 10 and row["unseen_auc_low"] > 50
    assert standalone_verdict(row)[0] == STILL_RECOGNISED


def test_a_forget_set_like_unseen_data_is_indistinguishable():
    rng = np.random.default_rng(1)
    n = 400
    same = lambda: (rng.random(n) < 0.8, rng.uniform(0.5, 4, n))  # noqa: E731 - one distribution, drawn twice
    logits, labels = _split_logits(*same(), *same(), rng)
    row = _row(logits, labels)
    assert abs(row["unseen_acc_gap"]) < 8 and row["unseen_auc_low"] < 50 < row["unseen_auc_high"]
    verdict, reasons = standalone_verdict(row)
    assert verdict == INDISTINGUISHABLE, reasons


def test_a_forget_set_fitted_worse_than_unseen_data_over_forgets():
    rng = np.random.default_rng(2)
    n = 400
    logits, labels = _split_logits(rng.random(n) < 0.3, rng.uniform(0.5, 4, n), rng.random(n) < 0.8,
                                   rng.uniform(0.5, 4, n), rng)
    assert standalone_verdict(_row(logits, labels))[0] == OVER_FORGETS


def test_a_few_samples_are_inconclusive_never_indistinguishable():
    rng = np.random.default_rng(3)
    n = 12
    same = lambda: (rng.random(n) < 0.8, rng.uniform(0.5, 4, n))  # noqa: E731
    logits, labels = _split_logits(*same(), *same(), rng, n=n)
    assert standalone_verdict(_row(logits, labels))[0] == TOO_FEW


class Masked(nn.Module):
    """A classifier whose forgotten class's logit is pinned (logit-mask): its outputs hide the class."""

    def __init__(self, net: nn.Module, cls: int):
        super().__init__()
        self.net, self.cls = net, cls

    def forward(self, x):
        out = self.net(x).clone()
        out[:, self.cls] = -1e4
        return out


def _class_logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, forgotten: int):
    with torch.no_grad():
        logits = model(x).numpy()
    keep, drop = (y != forgotten).numpy(), (y == forgotten).numpy()
    half = len(y) // 2
    split = {"retain_train": keep.copy(), "forget_train": drop.copy(), "test_retain": keep.copy(),
             "test_forget": drop.copy()}
    for k in ("retain_train", "forget_train"):
        split[k][half:] = False
    for k in ("test_retain", "test_forget"):
        split[k][:half] = False
    return ({k: logits[m] for k, m in split.items()}, {k: y.numpy()[m] for k, m in split.items()})


def test_class_requests_tell_recognised_masked_and_removed_apart():
    torch.manual_seed(0)
    classes, forgotten = 4, 2
    centres = torch.randn(classes, 8) * 3
    y = torch.arange(classes).repeat(100)
    x = centres[y] + torch.randn(len(y), 8)
    trained = nn.Linear(8, classes)
    optimiser = torch.optim.SGD(trained.parameters(), lr=0.1)
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.cross_entropy(trained(x), y).backward()
        optimiser.step()
    rows = {}
    for name, model in (("trained", trained), ("masked", Masked(trained, forgotten))):
        rows[name] = _row(*_class_logits(model, x, y, forgotten))
    # "removed", as Retrain leaves it: the class's logit still moves with the input but never wins
    removed = nn.Linear(8, classes)
    with torch.no_grad():
        removed.load_state_dict(trained.state_dict())
        others = [c for c in range(classes) if c != forgotten]
        removed.weight[forgotten] = trained.weight[others].mean(0)
        removed.bias[forgotten] = trained.bias[others].min() - 20.0
    rows["removed"] = _row(*_class_logits(removed, x, y, forgotten))
    assert standalone_verdict(rows["trained"])[0] == STILL_RECOGNISED
    assert standalone_verdict(rows["masked"])[0] == HIDDEN_IN_HEAD
    assert rows["masked"]["head_response"] < 10
    assert standalone_verdict(rows["removed"])[0] == NO_LONGER_PREDICTED


def test_seed_aggregates_take_the_worse_verdict_on_a_tie():
    base = {"model": "m", "request": 1, "method": "x", "epochs": 5}
    rows = [{**base, "seed": 0, "standalone_verdict": INDISTINGUISHABLE},
            {**base, "seed": 1, "standalone_verdict": STILL_RECOGNISED},
            {**base, "seed": None}]
    for r in rows[:2]:
        r["unseen_auc"] = 50.0  # marks them as carrying the Retrain-free figures
    rows[0].update(unseen_acc_gap=0.0, unseen_acc_gap_low=-1.0, unseen_acc_gap_high=1.0, unseen_auc_low=48.0,
                   unseen_auc_high=52.0, forget_n=500, unseen_n=500)
    rows[1].update(unseen_acc_gap=9.0, unseen_acc_gap_low=5.0, unseen_acc_gap_high=13.0, unseen_auc_low=48.0,
                   unseen_auc_high=52.0, forget_n=500, unseen_n=500)
    add_standalone_verdicts(rows)
    assert rows[0]["standalone_verdict"] == INDISTINGUISHABLE and rows[1]["standalone_verdict"] == STILL_RECOGNISED
    assert rows[2]["standalone_verdict"] == STILL_RECOGNISED
    assert rows[2]["standalone_by_seed"].count("1/2") == 2
