"""Tests of the membership-inference attack suite (prunelora.metrics.attacks)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from prunelora.metrics import attacks as A
from prunelora.metrics import mia
from prunelora.metrics.attacks import ATTACKS, attack_suite, confidence, entropy, loss, modified_entropy, prob

NAMES = ("svc_confidence", "svc_entropy", "svc_m_entropy", "svc_prob", "loss_lr")
KEYS = {n: A.attack_keys(n) for n in NAMES}


def eff(n: str) -> str:
    return KEYS[n].efficacy


def acc(n: str) -> str:
    return KEYS[n].acc


def suite_keys() -> set[str]:
    keys = {"mia_holdout_n"}
    for k in KEYS.values():
        keys |= {k.efficacy, f"{k.efficacy}_spread", k.acc, f"{k.acc}_spread", f"{k.acc}_low", f"{k.acc}_high",
                 k.conclusive}
    return keys
K = 10
P = np.array([0.7, 0.2, 0.1])


def logits_of(probs) -> np.ndarray:
    """Logits whose softmax is probs (log p, up to rounding)."""
    return np.log(np.atleast_2d(np.asarray(probs, dtype=np.float64)))


# --- modified entropy -------------------------------------------------------------------------------

def test_modified_entropy_hand_computed():
    # Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    label0 = -(1 - 0.7) * math.log(0.7) - 0.2 * math.log(1 - 0.2) - 0.1 * math.log(1 - 0.1)
    label2 = -(1 - 0.1) * math.log(0.1) - 0.7 * math.log(1 - 0.7) - 0.2 * math.log(1 - 0.2)
    assert label0 == pytest.approx(0.16216725, abs=1e-8)  # 0.3*0.35667 + 0.2*0.22314 + 0.1*0.10536
    assert label2 == pytest.approx(2.95973626, abs=1e-8)  # 0.9*2.30259 + 0.7*1.20397 + 0.2*0.22314
    got = modified_entropy(logits_of([P, P]), np.array([0, 2]))
    assert got.shape == (2, 1) and got.dtype == np.float64
    np.testing.assert_allclose(got[:, 0], [label0, label2], rtol=1e-12)


def _buggy_variants(p: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible wrong versions of Mentr, each one mistake (the first is Liu et al.'s code verbatim)."""
    rows = np.arange(len(labels))
    log_p, log_q = np.log(p), np.log(1 - p)

    def combine(weight_true, log_true, log_other, index_rows=True):
        w, lt = p.copy(), log_other.copy()
        if index_rows:
            w[rows, labels], lt[rows, labels] = weight_true[rows, labels], log_true[rows, labels]
        else:  # [:, labels]: every row gets every batch label's column replaced
            w[:, labels], lt[:, labels] = weight_true[:, labels], log_true[:, labels]
        return -(w * lt).sum(axis=1)

    return {
        "liu_et_al_verbatim": combine(1 - p, log_p, log_p, index_rows=False),
        "log_p_for_other_classes": combine(1 - p, log_p, log_p),
        "log_1mp_for_true_class": combine(1 - p, log_q, log_q),
        "column_indexing_by_labels": combine(1 - p, log_p, log_q, index_rows=False),
    }


def test_modified_entropy_differs_from_buggy_variants():
    labels = np.array([0, 2])
    ours = modified_entropy(logits_of([P, P]), labels)[:, 0]
    for name, wrong in _buggy_variants(np.array([P, P]), labels).items():
        assert not np.allclose(ours, wrong, rtol=1e-6), name


def test_modified_entropy_batch_equals_row_by_row():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, (50, K))
    y = rng.integers(0, K, 50)
    batch = modified_entropy(z, y)[:, 0]
    single = [modified_entropy(z[i:i + 1], y[i:i + 1])[0, 0] for i in range(50)]
    np.testing.assert_allclose(batch, single, rtol=1e-12)


def test_modified_entropy_precise_complement_of_a_confident_class():
    # logits [40, 0, 0], label 1: 1 - p_0 = 2e^-40 / (1 + 2e^-40) ~ 8.5e-18, which 1 - p in float64 rounds to 0.
    d = 1 + 2 * math.exp(-40)
    p0, p1 = 1 / d, math.exp(-40) / d
    q0 = 2 * math.exp(-40) / d
    expected = -(1 - p1) * math.log(p1) - p0 * math.log(q0) - p1 * math.log1p(-p1)  # ~ 80 - log 2
    assert expected == pytest.approx(80 - math.log(2), abs=1e-9)
    got = modified_entropy(np.array([[40.0, 0.0, 0.0]]), np.array([1]))[0, 0]
    assert got == pytest.approx(expected, rel=1e-12)  # the naive 1 - p would give ~40 + 69.08


def test_modified_entropy_clipped_and_finite_for_extreme_logits():
    z = np.array([[1000.0, 0.0, 0.0], [0.0, 1000.0, 0.0]], dtype=np.float32)
    got = modified_entropy(z, np.array([0, 0]))[:, 0]
    assert np.all(np.isfinite(got))
    assert got[0] == pytest.approx(0.0, abs=1e-300)
    # confidently wrong: p_y = e^-1000 and 1 - p_1 = 2e^-1000 both floored at 1e-30
    assert got[1] == pytest.approx(-2 * math.log(1e-30), rel=1e-12)


# --- entropy, confidence, prob, loss ----------------------------------------------------------------

def test_entropy_hand_computed():
    expected = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert expected == pytest.approx(0.80181855, abs=1e-8)
    got = entropy(logits_of([P, P]), np.array([0, 2]))
    assert got.shape == (2, 1) and got.dtype == np.float64
    np.testing.assert_allclose(got[:, 0], [expected, expected], rtol=1e-12)  # labels do not matter
    assert entropy(np.zeros((1, 2)), np.array([1]))[0, 0] == pytest.approx(math.log(2), rel=1e-12)


@pytest.mark.parametrize("k", [2, 10, 100])
def test_entropy_uniform_is_log_k(k):
    got = entropy(np.full((3, k), 5.0), np.zeros(3, dtype=int))[:, 0]
    np.testing.assert_allclose(got, math.log(k), rtol=1e-12)


def test_entropy_of_a_one_hot_is_zero_and_finite():
    got = entropy(np.array([[1000.0, 0.0, 0.0]]), np.array([0]))[0, 0]
    assert np.isfinite(got) and got == pytest.approx(0.0, abs=1e-300)


def test_confidence_prob_loss_agree():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 2, (20, K)).astype(np.float32)
    y = rng.integers(0, K, 20)
    p = prob(z, y)
    assert p.shape == (20, K) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    c = confidence(z, y)
    assert c.shape == (20, 1) and c.dtype == np.float64
    np.testing.assert_allclose(c[:, 0], p[np.arange(20), y], rtol=1e-12)
    per_loss = loss(z, y)
    assert per_loss.shape == (20, 1) and per_loss.dtype == np.float64
    np.testing.assert_allclose(per_loss[:, 0], -np.log(c[:, 0]), rtol=1e-9)


@pytest.mark.parametrize("fn,width", [(confidence, 1), (entropy, 1), (modified_entropy, 1), (prob, K), (loss, 1)])
def test_features_of_an_empty_split(fn, width):
    got = fn(np.zeros((0, K), dtype=np.float32), np.zeros(0, dtype=int))
    assert got.shape == (0, width) and got.dtype == np.float64


# --- registry ---------------------------------------------------------------------------------------

def test_registry():
    assert tuple(ATTACKS) == NAMES
    assert ATTACKS["svc_confidence"].features is confidence
    assert ATTACKS["svc_entropy"].features is entropy
    assert ATTACKS["svc_m_entropy"].features is modified_entropy
    assert ATTACKS["svc_prob"].features is prob
    assert ATTACKS["loss_lr"].features is loss
    for name in NAMES[:4]:
        clf = ATTACKS[name].make_classifier()
        assert isinstance(clf, SVC)
        assert (clf.C, clf.gamma, clf.kernel) == (3, "auto", "rbf")
    steps = [type(step) for _, step in ATTACKS["loss_lr"].make_classifier().steps]
    assert steps == [StandardScaler, LogisticRegression]


# --- the suite on synthetic data --------------------------------------------------------------------

def synthetic(rng, n: int, margin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Logits with noise and the true class raised by a margin drawn from U(margin)."""
    labels = rng.integers(0, K, n)
    z = rng.normal(0.0, 0.5, (n, K))
    z[np.arange(n), labels] += rng.uniform(*margin, n)
    return z.astype(np.float32), labels


CONFIDENT, UNSURE = (8.0, 12.0), (0.0, 2.0)


def splits(seed: int, member, nonmember, forget, n=(300, 300, 200)):
    rng = np.random.default_rng(seed)
    parts = {"retain_train": synthetic(rng, n[0], member), "test_retain": synthetic(rng, n[1], nonmember),
             "forget_train": synthetic(rng, n[2], forget)}
    return {k: v[0] for k, v in parts.items()}, {k: v[1] for k, v in parts.items()}


def test_keys():
    out = attack_suite(*splits(0, CONFIDENT, UNSURE, UNSURE))
    assert set(out) == suite_keys()
    assert all(isinstance(out[key], float) for n in NAMES for key in (eff(n), acc(n)))
    assert all(isinstance(out[KEYS[n].conclusive], bool) for n in NAMES)
    assert out["mia_holdout_n"] == 120  # 20 % of the balanced 2 x 300 shadow sample


def test_separable_forget_like_nonmembers_reads_fully_forgotten():
    out = attack_suite(*splits(1, CONFIDENT, UNSURE, UNSURE))
    for name in NAMES:
        assert out[acc(name)] >= 95.0, (name, out)
        assert out[eff(name)] >= 95.0, (name, out)
        assert out[KEYS[name].conclusive] is True


def test_separable_forget_like_members_reads_remembered():
    out = attack_suite(*splits(2, CONFIDENT, UNSURE, CONFIDENT))
    for name in NAMES:
        assert out[acc(name)] >= 95.0, (name, out)
        assert out[eff(name)] <= 5.0, (name, out)


@pytest.mark.slow
def test_indistinguishable_members_give_chance_accuracy():
    # Members and non-members from one distribution: whatever the attacker learns, its held-out
    # accuracy is ~Binomial(400, 1/2) / 400 (2 x 1000 shadow samples, 20 % held out): sd 2.5 points.
    # The tolerance of 10 points is 4 sd (two-sided p ~ 6e-5 per attack); the data are seeded, so the
    # test is deterministic, and an attacker that leaked labels or scored its training data would fail.
    out = attack_suite(*splits(5, (2.0, 5.0), (2.0, 5.0), (2.0, 5.0), n=(1000, 1000, 200)))
    for name in NAMES:
        assert abs(out[acc(name)] - 50.0) <= 10.0, (name, out)
        assert out[KEYS[name].conclusive] is False, (name, out)  # flagged inconclusive: its interval includes 50
        assert out[f"{acc(name)}_low"] <= 50.0 <= out[f"{acc(name)}_high"]


def test_loss_lr_learns_on_small_losses_where_unscaled_lr_does_not():
    # Well-fit members (loss ~4e-6) vs non-members (loss ~2e-3): the seed's failure mode.
    logits, labels = splits(6, (14.0, 16.0), (8.0, 10.0), (8.0, 10.0))
    suite = attack_suite(logits, labels, attacks={"loss_lr": ATTACKS["loss_lr"]})
    unscaled = attack_suite(logits, labels, attacks={"loss_lr": A.Attack(loss, LogisticRegression)})
    assert unscaled["mia_loss_lr_acc"] <= 60.0  # the data do reproduce the failure...
    assert suite["mia_loss_lr_acc"] >= 90.0  # ...and the standardised attacker does not have it
    assert suite["mia_loss_lr"] >= 85.0


def test_svc_confidence_is_the_papers_mia_efficacy():
    logits, labels = splits(7, (2.0, 6.0), (0.0, 4.0), (0.0, 5.0))
    out = attack_suite(logits, labels, seed=3, cap=250, draws=1)
    ref = mia.mia_efficacy(logits, labels, seed=3 * 1009, cap=250)
    assert out["mia_efficacy"] == ref["mia_efficacy"]
    assert out["mia_attack_acc"] == ref["mia_attack_acc"]


def test_deterministic_for_a_fixed_seed():
    logits, labels = splits(8, (2.0, 6.0), (0.0, 4.0), (0.0, 5.0))
    first = attack_suite(logits, labels, seed=11, cap=200)
    second = attack_suite(logits, labels, seed=11, cap=200)
    assert first == second


def test_same_balanced_shadow_indices_for_every_attack(monkeypatch):
    calls = []
    original = mia.balanced_shadow

    def recording(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(mia, "balanced_shadow", recording)
    logits, labels = splits(9, CONFIDENT, UNSURE, UNSURE)
    attack_suite(logits, labels, seed=4, cap=120, draws=1)  # cap < 300: a real subsample, so the seed matters
    assert len(calls) == len(NAMES)
    expected = original(300, 300, 120, 4 * 1009)
    for members, nonmembers in calls:
        assert len(members) == len(nonmembers) == 120
        np.testing.assert_array_equal(members, expected[0])
        np.testing.assert_array_equal(nonmembers, expected[1])


@pytest.mark.parametrize("empty_logits", [np.zeros((0, 0), np.float32), np.zeros((0, K), np.float32)])
def test_empty_forget_set_gives_nan(empty_logits):
    """No forget samples: no efficacy, but the attacker's accuracy is still measured on shadow data."""
    logits, labels = splits(10, CONFIDENT, UNSURE, UNSURE)
    logits["forget_train"], labels["forget_train"] = empty_logits, np.zeros(0, dtype=np.int64)
    out = attack_suite(logits, labels)
    assert set(out) == suite_keys()
    assert all(math.isnan(out[eff(n)]) for n in NAMES)
    assert all(math.isfinite(out[acc(n)]) for n in NAMES)


def test_draws_vary_the_shadow_sample_and_report_their_spread():
    logits, labels = splits(12, (2.0, 6.0), (0.0, 4.0), (0.0, 5.0))
    one = attack_suite(logits, labels, seed=2, cap=150, draws=1)
    five = attack_suite(logits, labels, seed=2, cap=150, draws=5)
    assert one["mia_attack_acc_spread"] == 0.0 and five["mia_attack_acc_spread"] > 0.0
    assert five["mia_attack_acc_low"] < five["mia_attack_acc"] < five["mia_attack_acc_high"]


def test_liu_protocol_by_hand():
    """Unlearn-Sparse's SVC_MIA: fit on the first N members against every non-member, no hold-out; the
    efficacy is the share of the target called non-member. Checked against a hand-computed fit."""
    rng = np.random.default_rng(0)
    member = rng.normal(0.9, 0.05, (500, 1))
    nonmember = rng.normal(0.5, 0.2, (120, 1))
    target = rng.normal(0.6, 0.2, (80, 1))
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(np.concatenate([member[:120], nonmember]),
                                                   np.r_[np.ones(120), np.zeros(120)])
    by_hand = (clf.predict(target) == 0).mean() * 100.0
    result = mia.liu_attack(member, nonmember, target, seed=0, cap=100, draws=2)
    assert result["efficacy"] == by_hand
    # the twin attacker reports an accuracy, and the members here are easy to tell apart
    assert result["attack_acc"] > 80.0 and result["conclusive"] is True


def test_liu_protocol_on_hand_made_logits_through_the_suite():
    # confidences 1.0 for members, 0.1 for non-members; the forget set half each: efficacy 50 exactly
    def logits_of(conf: np.ndarray) -> np.ndarray:
        return np.stack([np.log(conf), np.log1p(-conf + 1e-12)], axis=1)

    conf = {"retain_train": np.full(300, 0.999), "test_retain": np.full(100, 0.1),
            "forget_train": np.r_[np.full(10, 0.999), np.full(10, 0.1)]}
    logits = {k: logits_of(v) for k, v in conf.items()}
    labels = {k: np.zeros(len(v), dtype=np.int64) for k, v in conf.items()}
    out = attack_suite(logits, labels, protocol="liu", attacks={"svc_confidence": ATTACKS["svc_confidence"]})
    assert out["mia_efficacy"] == 50.0
