"""The evidence beyond the outputs, on hand-made inputs: probe, relearn counting, U-LiRA, the challenge's
attack and the verdict rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from prunelora.data import ImageSet
from prunelora.metrics.challenge import challenge_attack
from prunelora.metrics.probe import classifier_head, halves, penultimate_features, probe_accuracy
from prunelora.metrics.relearn import RelearnRecipe, relearn_parts, relearn_steps, steps_until
from prunelora.metrics.ulira import balanced_membership, logit_confidence, ulira
from prunelora.metrics.verdict import FLOORS, add_verdicts, tolerances, verdict


# -- the linear probe ---------------------------------------------------------------------------------
def blobs(separation: float, n: int = 400, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centres = rng.normal(0, 1, (4, dim)) * separation
    return centres[y] + rng.normal(0, 1, (n, dim)), y


def test_probe_reads_separable_features_and_not_inseparable_ones():
    x, y = blobs(separation=10.0)
    high = probe_accuracy(x[:200], y[:200], x[200:], y[200:])["test"]
    x, y = blobs(separation=0.0, seed=1)
    low = probe_accuracy(x[:200], y[:200], x[200:], y[200:])["test"]
    assert high >= 98.0
    assert abs(low - 25.0) <= 12.0  # four classes: chance is 25 % (sd ~3 points on 200 samples)


def test_halves_are_stratified_and_disjoint():
    labels = np.repeat(np.arange(5), 7)
    a, b = halves(labels, seed=3)
    assert not set(a) & set(b) and len(a) + len(b) == len(labels)
    assert all((labels[a] == c).sum() == 4 and (labels[b] == c).sum() == 3 for c in range(5))
    a, b = halves(np.zeros(0, np.int64), seed=3)  # no test split: two empty halves
    assert len(a) == len(b) == 0 and a.dtype == np.int64


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU())
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_penultimate_features_are_the_heads_input():
    model = Tiny().eval()
    data = ImageSet(torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8), torch.zeros(5, dtype=torch.long))
    feats = penultimate_features(model, data, num_classes=3)
    expected = model.body(data.images.float() / 255.0).detach().numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-6)
    assert classifier_head(model, 3) is model.head and classifier_head(model, 7) is None


# -- relearn time -------------------------------------------------------------------------------------
def test_relearn_counts_the_first_step_reaching_the_target():
    curve = [0.0, 5.0, 20.0, 44.9, 45.0, 80.0]  # accuracy after 0, 1, 2, ... steps
    assert steps_until(curve, 45.0, max_steps=50) == (4, True)
    assert steps_until(curve, 0.0, max_steps=50) == (0, True)  # already there: no step needed
    assert steps_until(curve, 90.0, max_steps=50) == (50, False)  # censored at the cap
    assert steps_until(curve, 80.0, max_steps=3) == (3, False)  # reached only after the cap


def test_relearn_parts_are_disjoint_and_seeded():
    data = ImageSet(torch.zeros(40, 1, 2, 2, dtype=torch.uint8), torch.arange(40))
    a, rest = relearn_parts(data, 0.1, seed=1, eval_cap=256)
    again, _ = relearn_parts(data, 0.1, seed=1, eval_cap=256)
    assert len(a) == 4 and len(rest) == 36
    assert not set(a.labels.tolist()) & set(rest.labels.tolist())
    assert a.labels.tolist() == again.labels.tolist()


def test_relearn_is_faster_for_a_model_that_kept_the_knowledge():
    """A model whose head still carries the class (its output merely shifted down) comes back within a few
    steps; a model that never learned the class needs more, or never gets there within the cap."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (60, 3, 2, 2), dtype=torch.uint8)
    forget = ImageSet(x, torch.zeros(60, dtype=torch.long))
    original = Tiny()
    with torch.no_grad():
        original.head.weight.zero_()
        original.head.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # predicts class 0 everywhere
    hidden = Tiny()
    hidden.load_state_dict(original.state_dict())
    with torch.no_grad():
        hidden.head.bias.copy_(torch.tensor([-0.2, 0.0, 0.0]))  # just below the others
    fresh = Tiny()
    with torch.no_grad():
        fresh.head.bias.copy_(torch.tensor([-30.0, 0.0, 0.0]))  # far away
    recipe = RelearnRecipe(share=0.2, lr=0.01, max_steps=20)
    fast = relearn_steps(hidden, forget, original, seed=0, recipe=recipe)
    slow = relearn_steps(fresh, forget, original, seed=0, recipe=recipe)
    assert fast["relearn_target"] == 50.0
    assert fast["relearn_reached"] and fast["relearn_steps"] <= 10
    assert slow["relearn_steps"] > fast["relearn_steps"]


# -- U-LiRA -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 2.0])
def test_ulira_recovers_a_planted_separation(shift):
    """Per-example means vary; 'unlearned' scores are shifted by `shift` sd. With known Gaussians the
    likelihood-ratio test's accuracy is Phi(shift / 2) and its AUC Phi(shift / sqrt 2)."""
    rng = np.random.default_rng(0)
    pairs, m = 16, 300
    forgotten = balanced_membership(pairs, m, seed=0)
    base = rng.normal(0, 3, m)
    retrained = base + rng.normal(0, 1, (pairs, m))
    unlearned = base + shift + rng.normal(0, 1, (pairs, m))
    out = ulira(unlearned, retrained, forgotten)
    assert out["ulira_acc"] == pytest.approx(100 * norm.cdf(shift / 2), abs=3.0)
    assert out["ulira_auc"] == pytest.approx(100 * norm.cdf(shift / math.sqrt(2)), abs=3.0)
    assert out["ulira_n"] == 2 * forgotten.sum()
    if shift == 0.0:
        assert out["ulira_tpr_1fpr"] <= 5.0
    else:
        assert out["ulira_tpr_1fpr"] >= 10.0


def test_balanced_membership_puts_each_target_in_half_the_pairs():
    member = balanced_membership(6, 50, seed=1)
    assert (member.sum(axis=0) == 3).all()
    odd = balanced_membership(5, 400, seed=1).sum(axis=0)
    assert set(odd) <= {2, 3} and 0.35 < (odd == 3).mean() < 0.65


def test_logit_confidence_is_finite_and_monotone():
    logits = np.array([[0.0, 0.0], [5.0, 0.0], [50.0, 0.0], [-np.inf, 0.0]])
    phi = logit_confidence(logits, np.zeros(4, dtype=np.int64))
    assert np.isfinite(phi).all()
    assert phi[0] == pytest.approx(0.0) and phi[1] == pytest.approx(5.0) and phi[2] == pytest.approx(50.0)
    assert phi[3] < -500


# -- the challenge's attack ---------------------------------------------------------------------------
def test_challenge_attack_is_chance_on_alike_losses_and_high_on_separated_ones():
    rng = np.random.default_rng(0)
    alike = challenge_attack(rng.exponential(1.0, 500), rng.exponential(1.0, 300))
    apart = challenge_attack(rng.exponential(0.01, 500), rng.exponential(1.0, 300) + 0.5)
    assert abs(alike["challenge_mia_acc"] - 50.0) <= 8.0
    assert apart["challenge_mia_acc"] >= 95.0
    assert alike["challenge_mia_n"] == 600  # balanced: the larger set sub-sampled to the smaller
    assert math.isnan(challenge_attack(np.ones(3), np.ones(2))["challenge_mia_acc"])


# -- verdicts -----------------------------------------------------------------------------------------
def _row(method, seed=0, **values):
    row = {"model": "m", "method": method, "epochs": None if method == "retrain" else 5, "seed": seed,
           "ua": 100.0, "ra": 99.0, "ta": 95.0, "mia_efficacy": 100.0, "mia_attack_conclusive": True,
           "probe_forget_acc": 40.0, "relearn_steps": 20}
    return {**row, **values}


def test_tolerance_is_twice_retrains_spread_never_below_the_floor():
    tol = tolerances([_row("retrain", 0, ua=90.0, probe_forget_acc=40.0), _row("retrain", 1, ua=100.0,
                                                                                probe_forget_acc=41.0)])
    assert tol["ua"] == pytest.approx(2 * np.std([90.0, 100.0], ddof=1))
    assert tol["probe_forget_acc"] == FLOORS["probe_forget_acc"]


@pytest.mark.parametrize("values,expected", [
    ({}, "matches Retrain"),
    ({"probe_forget_acc": 90.0}, "hides"),  # a head that masks the class: the features still carry it
    ({"relearn_steps": 2}, "hides"),
    ({"ulira_acc": 80.0}, "hides"),
    ({"head_response": 0.0}, "hides"),  # the forget class's logit pinned: a mask in the head
    ({"head_response": 70.0}, "matches Retrain"),
    ({"ua": 60.0}, "does not forget"),
    ({"mia_efficacy": 40.0}, "does not forget"),
    ({"mia_efficacy": 40.0, "mia_attack_conclusive": False}, "matches Retrain"),  # an attacker at chance says nothing
    ({"ra": 20.0}, "damages utility"),
    ({"ra": 20.0, "probe_forget_acc": 90.0}, "hides, damages utility"),  # what happened to the data comes first
    ({"ta": 50.0, "ua": 60.0}, "does not forget, damages utility"),
])
def test_verdict_rules(values, expected):
    ref = _row("retrain", ulira_acc=50.0, head_response=75.0)
    tol = tolerances([ref])
    assert verdict(_row("x", **values), ref, tol)[0] == expected


def test_over_forgetting_is_named():
    ref = _row("retrain", ua=10.0)
    assert verdict(_row("ga", ua=100.0), ref, tolerances([ref]))[0] == "over-forgets"


def test_add_verdicts_per_seed_and_on_the_means():
    rows = [_row("retrain", s) for s in (0, 1)] + [_row("logit-mask", s, probe_forget_acc=95.0) for s in (0, 1)]
    rows.append(dict(_row("logit-mask", None, probe_forget_acc=95.0), n_seeds=2))
    rows.append(dict(_row("retrain", None), n_seeds=2))
    add_verdicts(rows)
    assert [r["verdict"] for r in rows if r["method"] == "retrain"] == ["matches Retrain"] * 3
    assert all(r["verdict"] == "hides" for r in rows if r["method"] == "logit-mask")
    aggregated = next(r for r in rows if r["method"] == "logit-mask" and r["seed"] is None)
    assert aggregated["verdict_by_seed"] == "hides 2/2"
    assert "probe" in aggregated["verdict_reasons"]


# -- head response ------------------------------------------------------------------------------------
def test_head_response_is_zero_for_a_pinned_logit_and_about_one_hundred_for_an_ordinary_one():
    from prunelora.metrics.head import head_response

    rng = np.random.default_rng(0)
    test = rng.normal(size=(200, 4))
    labels = {"test_retain": np.array([0, 1, 2] * 50), "test_forget": np.array([3] * 50)}
    free = {"test_retain": test[:150], "test_forget": test[150:]}
    assert 80.0 < head_response(free, labels)["head_response"] < 120.0  # same spread as the others
    masked = {k: v.copy() for k, v in free.items()}
    for v in masked.values():
        v[:, 3] = -np.inf  # logit-mask
    assert head_response(masked, labels)["head_response"] == 0.0
    zero_row = {k: np.concatenate([v[:, :3], np.full((len(v), 1), 1.5)], axis=1) for k, v in free.items()}
    assert head_response(zero_row, labels)["head_response"] == 0.0  # a zeroed classifier row: its bias only
    assert head_response(free, {"test_retain": labels["test_retain"], "test_forget": np.zeros(0, int)}) == {}


@pytest.mark.parametrize("scenario", ["class", "random"])
def test_the_probe_on_features_captured_with_the_logits_equals_its_own_pass(scenario, digits_raw):
    from prunelora.data.scenarios import request_splits, requests_of
    from prunelora.metrics.evaluate import collect_logits
    from prunelora.metrics.probe import probe_metrics
    from prunelora.models import build_model

    requests = requests_of(digits_raw, scenario, 3, 0.1 if scenario == "random" else None, None)
    splits = request_splits(digits_raw, requests[:1], 20, 10, 0, "cpu", scenario)
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 1, 16, digits_raw.mean, digits_raw.std, {"width": 4}).eval()
    features: dict = {}
    collect_logits(model, splits, 64, features)
    assert features["forget_train"].shape == (len(splits.forget_train), 32)
    assert features["test_forget"].shape[0] == len(splits.test_forget)
    captured, own = probe_metrics(model, splits, 0, 64, features), probe_metrics(model, splits, 0, 64)
    assert captured.keys() == own.keys()
    for key in own:
        assert (math.isnan(own[key]) and math.isnan(captured[key])) or captured[key] == pytest.approx(own[key]), key
