"""The causal-LM verdicts, with Retrain and without it: each word they can say, and the reason it comes with."""
from __future__ import annotations

from prunelora.metrics.causal_lm import verdicts as v

ORIGINAL = {"retain_utility": 0.60, "forget_prob": 0.99, "retain_prob": 0.98, "mia_min_k_auc": 0.995}
RETRAIN = {"forget_quality": 1.0, "privleak": 0.0, "retain_utility": 0.59, "forget_prob": 0.45,
           "forget_rouge_l": 0.77, "relearn_prob": 0.47, "forget_rouge_l_worst": 0.77, "mia_min_k_auc": 0.48}


def like_retrain(**changes) -> dict:
    return {**RETRAIN, **changes}


def test_a_row_like_retrain_matches_it():
    assert v.with_retrain(like_retrain(), RETRAIN, ORIGINAL) == (v.MATCHES, [])


def test_each_failed_test_is_a_reason_and_the_sign_of_privleak_says_which_side():
    label, reasons = v.with_retrain(like_retrain(forget_quality=0.01, privleak=-90.0), RETRAIN, ORIGINAL)
    assert label == v.DIFFERS
    assert any("forget quality 0.01 < 0.05" in r for r in reasons)
    assert any("PrivLeak -90.0 %" in r and "under-unlearning" in r for r in reasons)
    _, reasons = v.with_retrain(like_retrain(privleak=+30.0), RETRAIN, ORIGINAL)
    assert any("less familiar than Retrain finds it" in r for r in reasons)
    assert v.with_retrain(like_retrain(privleak=19.9), RETRAIN, ORIGINAL)[0] == v.MATCHES  # within the band


def test_utility_below_nine_tenths_of_the_original_damages_utility_with_and_without_retrain():
    row = like_retrain(retain_utility=0.50)  # 0.50 < 0.9 x 0.60, and < 0.9 x Retrain's 0.59
    label, reasons = v.with_retrain(row, RETRAIN, ORIGINAL)
    assert label == f"{v.DIFFERS}, {v.DAMAGES}" and any("the original's 0.600" in r for r in reasons)
    label, reasons = v.without_retrain({**row, "mia_min_k_auc": 0.5}, 200, 200, ORIGINAL)
    assert label == f"{v.INDISTINGUISHABLE}, {v.DAMAGES}"
    assert v.without_retrain({**row, "retain_utility": 0.55, "mia_min_k_auc": 0.5}, 200, 200, ORIGINAL)[0] == \
        v.INDISTINGUISHABLE  # 0.55 >= 0.54: kept


def test_tofus_model_utility_is_read_before_the_retain_utility():
    assert v.utility({"model_utility": 0.4, "retain_utility": 0.9}) == ("model utility", 0.4)
    assert v.utility({"retain_utility": 0.9}) == ("retain utility", 0.9)


def test_facts_that_come_back_after_relearning_or_asked_another_way_are_hidden():
    label, reasons = v.with_retrain(like_retrain(relearn_prob=0.80), RETRAIN, ORIGINAL)
    assert label == v.HIDES and "brings the other half back" in reasons[0]
    label, reasons = v.with_retrain(like_retrain(forget_rouge_l_worst=0.99, forget_quality=0.01), RETRAIN, ORIGINAL)
    assert label == f"{v.DIFFERS}, {v.HIDES}" and any("another way of asking" in r for r in reasons)
    # a model that still answers in its own format does not forget: it is not said to hide
    assert v.hiding(like_retrain(forget_prob=0.95, relearn_prob=0.9), RETRAIN) == []


def test_without_a_holdout_membership_is_not_measured_and_the_fall_against_retain_is_given():
    label, reasons = v.without_retrain({"forget_prob": 0.5, "retain_prob": 0.98, "retain_utility": 0.6}, 50, 0,
                                       ORIGINAL)
    assert label == v.NOT_MEASURED
    assert any("51% of the original's" in r for r in reasons) and any("--holdout" in r for r in reasons)


def test_without_retrain_the_auc_interval_decides_and_small_sets_are_inconclusive():
    assert v.without_retrain({"mia_min_k_auc": 0.95}, 200, 200, ORIGINAL)[0] == v.STILL_RECOGNISED
    assert v.without_retrain({"mia_min_k_auc": 0.10}, 200, 200, ORIGINAL)[0] == v.OVER_FORGETS
    assert v.without_retrain({"mia_min_k_auc": 0.50}, 200, 200, ORIGINAL)[0] == v.INDISTINGUISHABLE
    label, reasons = v.without_retrain({"mia_min_k_auc": 0.50}, 20, 200, ORIGINAL)
    assert label == v.TOO_FEW and "20 examples on one side (< 30)" in reasons[0]
    assert v.without_retrain({"mia_min_k_auc": 0.55}, 40, 40, ORIGINAL)[0] == v.TOO_FEW  # wider than the band
