"""The LM unlearning metrics (prunelora.metrics.causal_lm.scores) on hand-computed values.

The references' formulas (open-unlearning commit d3d7cf9, MUSE muse_bench commit fcd6651, TOFU commit bdc209e) are
spelled out beside each value."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from sklearn.metrics import auc as area
from sklearn.metrics import roc_curve

from prunelora.errors import UserError
from prunelora.metrics.causal_lm import scores
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


def test_rouge_stems_as_tofu_and_open_unlearning():
    # RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction).recall: the Porter stemmer turns
    # works/worked into "work" and engineer/engineers into "engin" (words of <= 3 characters are not stemmed):
    # reference [work, as, an, engin], prediction [work, as, engin] -> LCS 3 of 4 reference tokens. Unstemmed, only
    # "as" is shared: 1 of 4.
    assert rouge_l_recall("worked as engineers", "works as an engineer") == pytest.approx(3 / 4)
    # the other way round all 3 reference tokens are reproduced in order
    assert rouge_l_recall("works as an engineer", "worked as engineers") == pytest.approx(1.0)
    # "running" -> "run", "runs" -> "run": the same stem; "ran" (3 characters) stays itself
    assert rouge_l_recall("he runs", "He was running") == pytest.approx(2 / 3)
    assert rouge_l_recall("he ran", "He was running") == pytest.approx(1 / 3)


def test_rouge_without_the_package_is_a_user_error(monkeypatch):
    scores._rouge_scorer.cache_clear()
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # import rouge_score now raises ImportError
    try:
        with pytest.raises(UserError, match="pip install 'rouge-score"):
            rouge_l_recall("a", "a")
    finally:
        scores._rouge_scorer.cache_clear()


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
    # open-unlearning's ZLIBAttack: avg_loss / len(zlib.compress(text)), here negated (higher = member).
    # len(zlib.compress(b"hello")) = 13, len(zlib.compress(b"hello hello hello hello")) = 16
    s = zlib_score(np.array([26.0, 8.0]), ["hello", "hello hello hello hello"])
    np.testing.assert_allclose(s, [-2.0, -0.5])
    with pytest.raises(ValueError):
        zlib_score(np.array([1.0]), ["a", "b"])


def test_min_k_takes_int_of_t_times_k_at_least_one():
    # open-unlearning's MinKProbAttack: num_k = max(1, int(len(lp) * k)), mean of the num_k lowest
    lp = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    # k=0.4: int(2.0) = 2 lowest -> (-5 - 4) / 2
    assert min_k_score([lp], k=0.4)[0] == pytest.approx(-4.5)
    # k=0.3: int(1.5) = 1 lowest -> -5 (ceil would take 2 -> -4.5)
    assert min_k_score([lp], k=0.3)[0] == pytest.approx(-5.0)
    # k=0.59: int(2.95) = 2 -> -4.5
    assert min_k_score([lp], k=0.59)[0] == pytest.approx(-4.5)
    # k=0.01: int(0.05) = 0 -> at least one token
    assert min_k_score([lp], k=0.01)[0] == pytest.approx(-5.0)
    assert min_k_score([lp], k=1.0)[0] == pytest.approx(-3.0)
    # T * k in floating point, as the reference: 25 * 0.28 = 7.000000000000001 -> 7 tokens
    many = -np.arange(1.0, 26.0)
    assert min_k_score([many], k=0.28)[0] == pytest.approx(np.mean(-np.arange(19.0, 26.0)))


def test_min_k_several_examples_and_an_empty_one():
    # [-1, -3] at k=0.5: int(1.0) = 1 -> -3; [-0.5]: max(1, int(0.5)) = 1 -> -0.5; no token: the reference's 0
    s = min_k_score([np.array([-1.0, -3.0]), np.array([-0.5]), np.array([])], k=0.5)
    np.testing.assert_allclose(s, [-3.0, -0.5, 0.0])
    with pytest.raises(ValueError):
        min_k_score([np.array([-1.0])], k=0.0)


def test_min_k_plus_plus():
    lp, mu, sigma = np.array([-1.0, -3.0]), np.array([-2.0, -2.0]), np.array([1.0, 2.0])
    # z = [(-1 + 2) / 1, (-3 + 2) / 2] = [1.0, -0.5]
    assert min_k_plus_plus_score([lp], [mu], [sigma], k=0.5)[0] == pytest.approx(-0.5)
    assert min_k_plus_plus_score([lp], [mu], [sigma], k=1.0)[0] == pytest.approx(0.25)


def test_min_k_plus_plus_clamps_the_variance_at_1e_6():
    # open-unlearning's MinKPlusPlusAttack: sigma^2 = clamp(E[log p^2] - mu^2, min=1e-6), z = (lp - mu) / sqrt(sigma^2):
    # a std under 1e-3 counts as 1e-3
    one = [np.array([-1.0])], [np.array([-2.0])]
    assert min_k_plus_plus_score(*one, [np.array([0.0])])[0] == pytest.approx(1.0 / 1e-3)
    assert min_k_plus_plus_score(*one, [np.array([5e-4])])[0] == pytest.approx(1.0 / 1e-3)
    assert min_k_plus_plus_score(*one, [np.array([2e-3])])[0] == pytest.approx(1.0 / 2e-3)


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


def test_priv_leak_is_muses_on_prunelora_aucs():
    # prunelora's AUC: forget = members (positive). MUSE's AUC' = 1 - AUC; PrivLeak = (AUC'_u - AUC'_r) / AUC'_r * 100
    # Finetune-like: AUC 0.97 against Retrain's 0.50 -> (0.03 - 0.50) / 0.50 * 100 = -94 (under-unlearning)
    assert priv_leak(0.97, 0.50) == pytest.approx(-94.0)
    # 0.48 against 0.40: (0.52 - 0.60) / 0.60 * 100 = -13.33...
    assert priv_leak(0.48, 0.40) == pytest.approx(-40.0 / 3.0)
    # over-unlearning: 0.30 against 0.50: (0.70 - 0.50) / 0.50 * 100 = +40
    assert priv_leak(0.30, 0.50) == pytest.approx(40.0)
    assert priv_leak(0.5, 0.5) == 0.0
    with pytest.raises(ValueError, match="retrain_auc"):
        priv_leak(0.9, 1.0)


def _muse_auc(forget_mink: np.ndarray, holdout_mink: np.ndarray) -> float:
    """MUSE's metrics/privleak.py: score 'Min-40%' = -mean(lowest log-probs); forget labelled 0 (non-member),
    holdout 1 (member); roc_curve(y, -score); auc."""
    ppl = np.concatenate([-forget_mink, -holdout_mink])
    y = np.array([0] * len(forget_mink) + [1] * len(holdout_mink))
    fpr, tpr, _ = roc_curve(y, -ppl)
    return float(area(fpr, tpr))


def test_priv_leak_equals_muses_eval_on_the_same_scores():
    rng = np.random.default_rng(0)
    holdout = rng.normal(-3.0, 1.0, 40)
    unlearned_forget, retrain_forget = rng.normal(-2.0, 1.0, 40), rng.normal(-2.8, 1.0, 40)
    muse_u, muse_r = _muse_auc(unlearned_forget, holdout), _muse_auc(retrain_forget, holdout)
    # MUSE's eval.py: (auc - AUC_RETRAIN) / AUC_RETRAIN * 100
    expected = (muse_u - muse_r) / muse_r * 100
    ours = priv_leak(attack_auc(unlearned_forget, holdout), attack_auc(retrain_forget, holdout))
    assert ours == pytest.approx(expected)
    assert ours < 0  # the unlearned model recognises its forget set more than Retrain does
