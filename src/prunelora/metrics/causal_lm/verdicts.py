"""A verdict per unlearned language model, with Retrain (the exact reference) and without it, worded as the image
task's (metrics/standalone.py) so a reader meets one vocabulary.

With Retrain: "matches Retrain" when TOFU's forget quality does not reject Retrain's truth-ratio distribution
(p >= FQ_P), MUSE's PrivLeak is within PRIVLEAK of zero (negative: the forget set still recognised, under-
unlearning; positive: less familiar than Retrain finds it, over-unlearning) and the model keeps UTILITY_SHARE
of Retrain's model utility; else "differs from Retrain" with the failed tests. Without Retrain (a user's real
request): the Min-K % attack's AUC, forget (members) vs holdout (never trained on), with Hanley and McNeil's
95 % interval: "indistinguishable from unseen data on every test" when the interval holds 50 % and lies within
AUC_BAND of it, "still recognised" above, "over-forgets" below (unlearned text looks less familiar than text
never seen: itself a signal), "inconclusive: too few samples" under MIN_SAMPLES a side. Without a holdout the
membership cannot be measured ("membership not measured"); the reasons still say how far the forget set fell
against the retain set, relative to the original. Either way a model that keeps less than UTILITY_SHARE of the
original's utility also "damages utility". With Retrain, a model whose forgotten facts come back under a
relearning attack or another way of asking HIDES_GAP more than Retrain's "hides" them (hiding).
"""
from __future__ import annotations

from typing import Any

from ..standalone import INDISTINGUISHABLE, OVER_FORGETS, STILL_RECOGNISED, TOO_FEW
from ..unseen import auc_interval

FQ_P = 0.05
PRIVLEAK = 20.0  # percent
UTILITY_SHARE = 0.9  # of Retrain's utility (with Retrain), of the original's (always)
AUC_BAND = 10.0  # points from 50
MIN_SAMPLES = 30
MATCHES, DIFFERS, HIDES = "matches Retrain", "differs from Retrain", "hides"
HIDES_GAP = 0.2  # a forgotten fact coming back this much more than Retrain's (P(answer) or ROUGE-L)
NOT_MEASURED = "membership not measured"
DAMAGES = "damages utility"

THRESHOLDS = {"forget_quality_p": FQ_P, "privleak_pct": PRIVLEAK, "utility_share": UTILITY_SHARE,
              "auc_band_pts": AUC_BAND, "min_samples": MIN_SAMPLES, "hides_gap": HIDES_GAP}


def utility(row: dict[str, Any]) -> tuple[str, float | None]:
    """(its name, the value) of a row's utility: TOFU's model utility where measured, else the retain utility."""
    if row.get("model_utility") is not None:
        return "model utility", row["model_utility"]
    return "retain utility", row.get("retain_utility")


def utility_reason(row: dict[str, Any], original: dict[str, Any] | None) -> str | None:
    """Why the row damages utility (less than UTILITY_SHARE of the original's utility), or None."""
    name, mu = utility(row)
    ref = utility(original or {})[1]
    if mu is None or ref is None or mu >= UTILITY_SHARE * ref:
        return None
    return f"{name} {mu:.3f} < {UTILITY_SHARE:g} x the original's {ref:.3f}"


def _with_utility(verdict: str, reasons: list[str], row: dict[str, Any],
                  original: dict[str, Any] | None) -> tuple[str, list[str]]:
    damage = utility_reason(row, original)
    return (f"{verdict}, {DAMAGES}", [*reasons, damage]) if damage else (verdict, reasons)


def with_retrain(row: dict[str, Any], retrain: dict[str, Any],
                 original: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    reasons = []
    fq = row.get("forget_quality")
    if fq is None:
        reasons.append("no truth ratios (the data has no paraphrased/perturbed answers)")
    elif fq < FQ_P:
        reasons.append(f"forget quality {fq:.2g} < {FQ_P}: truth ratios unlike Retrain's")
    leak = row.get("privleak")
    if leak is not None and abs(leak) > PRIVLEAK:
        side = "still recognised: under-unlearning" if leak < 0 else "less familiar than Retrain finds it"
        reasons.append(f"PrivLeak {leak:+.1f} % beyond +-{PRIVLEAK:g} % ({side})")
    (name, mu), ref = utility(row), utility(retrain)[1]
    if mu is not None and ref is not None and mu < UTILITY_SHARE * ref:
        reasons.append(f"{name} {mu:.3f} < {UTILITY_SHARE:g} x Retrain's {ref:.3f}")
    hidden = hiding(row, retrain)
    verdict = MATCHES if not reasons else DIFFERS
    if hidden:
        verdict = HIDES if verdict == MATCHES else f"{DIFFERS}, {HIDES}"
    return _with_utility(verdict, reasons + hidden, row, original)


def hiding(row: dict[str, Any], retrain: dict[str, Any]) -> list[str]:
    """Why the forgotten facts look hidden rather than removed, against Retrain (the reference for how much
    comes back when nothing was learned): the relearning attack brings the other half back, or another way
    of asking (prompt format, paraphrased question) gives the answers back, HIDES_GAP more than Retrain's.
    Only a model that looks forgotten in its own format (its forget P(answer) and ROUGE-L within HIDES_GAP of
    Retrain's) can hide: one that still answers does not forget, which the other tests already say."""
    for key in ("forget_prob", "forget_rouge_l"):
        mine, theirs = row.get(key), retrain.get(key)
        if mine is not None and theirs is not None and mine - theirs > HIDES_GAP:
            return []
    reasons = []
    for key, what in (("relearn_prob", "relearning half of the forget set brings the other half back: P(answer)"),
                      ("forget_rouge_l_worst", "another way of asking gives the answers back: ROUGE-L")):
        mine, theirs = row.get(key), retrain.get(key)
        if mine is not None and theirs is not None and mine - theirs > HIDES_GAP:
            reasons.append(f"{what} {mine:.3f} against Retrain's {theirs:.3f}")
    return reasons


def fall_against_retain(row: dict[str, Any], original: dict[str, Any] | None) -> str | None:
    """How far the forget set's answer probability fell against the retain set's, relative to the original's
    (what can be read without unseen data), as a reason; None where it cannot be read."""
    f, r = row.get("forget_prob"), row.get("retain_prob")
    f0, r0 = (original or {}).get("forget_prob"), (original or {}).get("retain_prob")
    if None in (f, r, f0, r0) or min(r, r0, f0) <= 0:
        return None
    kept = (f / r) / (f0 / r0)
    return (f"the forget set's P(answer) relative to the retain set's is {kept:.0%} of the original's "
            f"({f:.3f} / {r:.3f} now, {f0:.3f} / {r0:.3f} before)")


def without_retrain(row: dict[str, Any], n_forget: int, n_holdout: int,
                    original: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    auc = row.get("mia_min_k_auc")
    if auc is None:
        fall = fall_against_retain(row, original)
        return _with_utility(NOT_MEASURED, [r for r in (fall, "no holdout examples: give --holdout") if r],
                             row, original)
    if min(n_forget, n_holdout) < MIN_SAMPLES:
        return _with_utility(TOO_FEW, [f"{min(n_forget, n_holdout)} examples on one side (< {MIN_SAMPLES})"],
                             row, original)
    pct = 100.0 * auc
    low, high = auc_interval(pct, n_forget, n_holdout)
    span = f"Min-K % AUC {pct:.1f} % [{low:.1f}, {high:.1f}]"
    if low > 50.0:
        verdict, reasons = STILL_RECOGNISED, [f"{span}: the forget set is told from unseen text"]
    elif high < 50.0:
        verdict, reasons = OVER_FORGETS, [f"{span}: the forget set looks less familiar than unseen text"]
    elif low >= 50.0 - AUC_BAND and high <= 50.0 + AUC_BAND:
        verdict, reasons = INDISTINGUISHABLE, [span]
    else:
        verdict, reasons = TOO_FEW, [f"{span}: the interval reaches beyond +-{AUC_BAND:g} points"]
    return _with_utility(verdict, reasons, row, original)


# The memorisation check: before anything is unlearned, does the original know the forget set in the prompt
# format the run uses? A model scored in a format it never saw may still give its answers' tokens a higher
# probability than unseen text's, yet not say them: unlearning it moves text it never produces, and its own
# format's answers stay. So the check asks that it says them (ROUGE-L of its greedy answers, question/answer
# data) and that it tells them from unseen text (the loss attack, or without a holdout the probability).
# Heuristic thresholds, printed with the figures.
KNOWS_AUC = 0.6  # the loss attack's AUC, forget (members) against holdout, at least this
KNOWS_ROUGE_GAIN = 0.2  # and the forget answers' ROUGE-L at least this far above the holdout's
ROUGE_FLOOR = 0.3  # without a holdout: the forget answers reproduced at least this well (ROUGE-L recall),
PROB_FLOOR = 0.3  # plain text without a holdout: a mean answer probability of at least this,
RETAIN_SHARE = 0.5  # and the forget set at least half as likely as the retain set


def knows_forget_set(summary: dict[str, Any]) -> tuple[bool, str]:
    """(whether the original says the forget set's answers and knows them better than what it never saw, the
    figures that say so)."""
    forget_p, forget_r = summary.get("forget_prob"), summary.get("forget_rouge_l")
    retain_p, held_r = summary.get("retain_prob"), summary.get("holdout_rouge_l")
    shown = [f"forget P(answer) {forget_p:.3f}" if forget_p is not None else "forget P(answer) not measured"]
    if forget_r is not None:
        shown.append(f"forget ROUGE-L {forget_r:.3f}")
    if "holdout_prob" in summary:
        shown.append(f"holdout P(answer) {summary['holdout_prob']:.3f}")
    if held_r is not None:
        shown.append(f"holdout ROUGE-L {held_r:.3f}")
    if retain_p is not None:
        shown.append(f"retain P(answer) {retain_p:.3f}")
    auc = summary.get("mia_loss_auc")
    if auc is not None:
        shown.append(f"loss-attack AUC {auc:.3f}")
        tells = auc >= KNOWS_AUC
        says = forget_r is None or held_r is None or forget_r - held_r >= KNOWS_ROUGE_GAIN
    else:
        tells = forget_p is not None and forget_p >= (RETAIN_SHARE * retain_p if retain_p is not None else 0.0) \
            and (forget_r is not None or forget_p >= PROB_FLOOR)
        says = forget_r is None or forget_r >= ROUGE_FLOOR
    return tells and says, ", ".join(shown)


MEMORISATION = {"knows_auc": KNOWS_AUC, "knows_rouge_gain": KNOWS_ROUGE_GAIN, "rouge_floor": ROUGE_FLOOR,
                "prob_floor": PROB_FLOOR, "retain_share": RETAIN_SHARE}
