"""The LM unlearning metrics (prunelora.metrics.causal_lm.scores) on hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from prunelora.metrics.causal_lm.scores import (
    MIA_SCORES,
    answer_probability,
    attack_auc,
    forget_quality,
    loss_score,
    min_k_plus_plus_score,
    min_k_score,
    model_utility,
    priv_leak,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_forget_stat,
    truth_ratio_retain_stat,
    zlib_score,
)

# --- ROUGE-L recall ------------------------------------------------------------------------------------------------


def test_rouge_identical_is_one():
    assert rouge_l_recall("the cat sat on the mat", "the cat sat on the mat") == 1.0


def test_rouge_recall_is_over_the_reference_length():
    # LCS = "the cat sat" (3 tokens) both ways; the denominator is the reference's token count.
    assert rouge_l_recall("the cat sat", "the cat sat on the mat") == pytest.approx(3 / 6)
    assert rouge_l_recall("the cat sat on the mat", "the cat sat") == 1.0


def test_rouge_lcs_is_a_subsequence_not_a_substring():
    # "the big cat quietly sat" vs "the cat sat down": LCS = the, cat, sat -> 3 of 4 reference tokens.
    assert rouge_l_recall("the big cat quietly sat", "the cat sat down") == pytest.approx(3 / 4)
    # order matters: reversed tokens share only one in order.
    assert rouge_l_recall("sat cat the", "the cat sat") == pytest.approx(1 / 3)


def test_rouge_ignores_case_and_punctuation():
    assert rouge_l_recall("The CAT, sat!", "the cat sat.") == 1.0
    # non-[a-z0-9] characters split tokens: "well-known" is two tokens.
    assert rouge_l_recall("well known", "Well-known") == 1.0
    assert rouge_l_recall("wellknown", "well-known") == 0.0


def test_rouge_empty_reference_or_prediction():
    assert rouge_l_recall("anything", "") == 0.0
    assert rouge_l_recall("anything", "?!, ...") == 0.0
    assert rouge_l_recall("", "the cat") == 0.0


# --- probability and truth ratio -------------------------------------------------------------------------------------


def test_answer_probability():
    np.testing.assert_allclose(answer_probability(np.array([0.0, 1.0, math.log(4)])), [1.0, math.exp(-1), 0.25])


def test_truth_ratio_averages_perturbed_losses_before_exp():
    r = truth_ratio(np.array([1.0]), np.array([[2.0, 4.0]]))
    np.testing.assert_allclose(r, [math.exp(1.0 - 3.0)])
    r = truth_ratio(np.array([1.0, 2.0]), np.array([[1.0], [0.5]]))
    np.testing.assert_allclose(r, [1.0, math.exp(1.5)])


@pytest.mark.parametrize("para, pert", [
    (np.ones(2), np.ones(2)),          # perturbed not 2-D
    (np.ones(2), np.ones((3, 2))),     # n mismatch
    (np.ones(2), np.ones((2, 0))),     # k = 0
    (np.ones((2, 1)), np.ones((2, 1))),  # paraphrased not 1-D
])
def test_truth_ratio_shape_errors(para, pert):
    with pytest.raises(ValueError, match="shape"):
        truth_ratio(para, pert)


def test_truth_ratio_forget_stat():
    # min(R, 1/R): 0.5, 0.5, 1.0 -> mean 2/3
    assert truth_ratio_forget_stat([0.5, 2.0, 1.0]) == pytest.approx(2 / 3)
    assert truth_ratio_forget_stat([0.0]) == 0.0


def test_truth_ratio_retain_stat():
    # max(0, 1 - R): 0.75, 0, 0 -> mean 0.25
    assert truth_ratio_retain_stat([0.25, 1.0, 3.0]) == pytest.approx(0.25)


def test_truth_ratio_stats_reject_empty_and_nan():
    for stat in (truth_ratio_forget_stat, truth_ratio_retain_stat):
        with pytest.raises(ValueError):
            stat([])
        with pytest.raises(ValueError):
            stat([1.0, float("nan")])


# --- forget quality --------------------------------------------------------------------------------------------------


def test_forget_quality_identical_samples_is_one():
    x = np.array([0.2, 0.5, 0.9, 1.3, 0.7])
    assert forget_quality(x, x.copy()) == 1.0


def test_forget_quality_different_distributions_is_tiny():
    rng = np.random.default_rng(0)
    assert forget_quality(rng.normal(0, 1, 200), rng.normal(3, 1, 200)) < 1e-6


def test_forget_quality_same_distribution_is_not_rejected():
    rng = np.random.default_rng(1)
    assert forget_quality(rng.normal(0, 1, 200), rng.normal(0, 1, 200)) > 0.01


def test_forget_quality_errors():
    with pytest.raises(ValueError, match="both sides"):
        forget_quality([], [1.0])
    with pytest.raises(ValueError, match="both sides"):
        forget_quality([1.0], np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        forget_quality([1.0, float("nan")], [1.0, 2.0])


# --- model utility ---------------------------------------------------------------------------------------------------


def test_model_utility_harmonic_mean():
    assert model_utility({"a": 0.5, "b": 1.0}) == pytest.approx(2 / 3)
    # 3 / (1/0.2 + 1/0.5 + 1/1) = 3 / 8
    assert model_utility({"p": 0.2, "rouge": 0.5, "tr": 1.0}) == pytest.approx(3 / 8)
    assert model_utility({"only": 0.7}) == pytest.approx(0.7)


def test_model_utility_zero_and_errors():
    assert model_utility({"a": 0.5, "b": 0.0}) == 0.0
    assert model_utility({"a": 0.5, "b": -0.1}) == 0.0
    with pytest.raises(ValueError):
        model_utility({})
    with pytest.raises(ValueError, match="NaN"):
        model_utility({"a": 0.5, "b": float("nan")})


# --- membership attacks ----------------------------------------------------------------------------------------------


def test_mia_scores_names():
    assert set(MIA_SCORES) == {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert all(isinstance(v, str) and v for v in MIA_SCORES.values())


def test_loss_score():
    np.testing.assert_allclose(loss_score(np.array([0.5, 2.0])), [-0.5, -2.0])


def test_zlib_score():
    # len(zlib.compress(b"hello")) = 13, len(zlib.compress(b"hello hello hello hello")) = 16
    s = zlib_score(np.array([26.0, 8.0]), ["hello", "hello hello hello hello"])
    np.testing.assert_allclose(s, [-2.0, -0.5])
    with pytest.raises(ValueError):
        zlib_score(np.array([1.0]), ["a", "b"])


def test_min_k_uses_ceil():
    lp = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    # k=0.4: ceil(2.0) = 2 lowest -> (-5 - 4) / 2
    assert min_k_score([lp], k=0.4)[0] == pytest.approx(-4.5)
    # k=0.3: ceil(1.5) = 2 (int() would take 1 -> -5.0)
    assert min_k_score([lp], k=0.3)[0] == pytest.approx(-4.5)
    # k=0.01: at least one token
    assert min_k_score([lp], k=0.01)[0] == pytest.approx(-5.0)
    assert min_k_score([lp], k=1.0)[0] == pytest.approx(-3.0)
    # 0.28 * 25 is 7.000000000000001 in floating point: still 7 tokens, not 8
    assert 0.28 * 25 > 7
    many = -np.arange(1.0, 26.0)
    assert min_k_score([many], k=0.28)[0] == pytest.approx(np.mean(-np.arange(19.0, 26.0)))


def test_min_k_several_examples_and_errors():
    s = min_k_score([np.array([-1.0, -3.0]), np.array([-0.5])], k=0.5)
    np.testing.assert_allclose(s, [-3.0, -0.5])
    with pytest.raises(ValueError):
        min_k_score([np.array([])])
    with pytest.raises(ValueError):
        min_k_score([np.array([-1.0])], k=0.0)


def test_min_k_plus_plus():
    lp, mu, sigma = np.array([-1.0, -3.0]), np.array([-2.0, -2.0]), np.array([1.0, 2.0])
    # z = [(-1 + 2) / 1, (-3 + 2) / 2] = [1.0, -0.5]
    assert min_k_plus_plus_score([lp], [mu], [sigma], k=0.5)[0] == pytest.approx(-0.5)
    assert min_k_plus_plus_score([lp], [mu], [sigma], k=1.0)[0] == pytest.approx(0.25)
    # sigma clipped at 1e-6
    assert min_k_plus_plus_score([np.array([-1.0])], [np.array([-2.0])], [np.array([0.0])])[0] == pytest.approx(1e6)


def test_min_k_plus_plus_alignment_errors():
    with pytest.raises(ValueError):
        min_k_plus_plus_score([np.array([-1.0])], [], [])
    with pytest.raises(ValueError):
        min_k_plus_plus_score([np.array([-1.0, -2.0])], [np.array([-1.0])], [np.array([1.0, 1.0])])


# --- AUC and PrivLeak ------------------------------------------------------------------------------------------------


def test_attack_auc():
    assert attack_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert attack_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert attack_auc([1.0, 2.0], [1.0, 2.0]) == pytest.approx(0.5)
    # members {1, 4}, non-members {2, 3}: 2 of 4 pairs ordered right; {3, 4} vs {1, 3.5}: 3 of 4
    assert attack_auc([1.0, 4.0], [2.0, 3.0]) == pytest.approx(0.5)
    assert attack_auc([3.0, 4.0], [1.0, 3.5]) == pytest.approx(0.75)


def test_attack_auc_errors():
    with pytest.raises(ValueError):
        attack_auc([], [1.0])
    with pytest.raises(ValueError):
        attack_auc([1.0], [])
    with pytest.raises(ValueError):
        attack_auc([1.0, float("inf")], [0.0])
    with pytest.raises(ValueError):
        attack_auc([1.0], [float("nan")])


def test_priv_leak():
    assert priv_leak(0.6, 0.5) == pytest.approx(20.0)
    assert priv_leak(0.4, 0.5) == pytest.approx(-20.0)
    assert priv_leak(0.5, 0.5) == 0.0
