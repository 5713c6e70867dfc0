"""A verdict without Retrain: what the Retrain-free evidence (metrics/unseen.py) shows, and no more.

A team unlearning a production model cannot afford the retrained yardstick, so every row also gets
a verdict read from the model alone, with its thresholds printed beside it:

Named or random samples (the forget set against held-out data of the same classes):
1. "inconclusive: too few samples" when either side holds fewer than MIN_SAMPLES, or an interval is
   so wide that a difference of WIDE_INTERVAL points could hide in it;
2. "still recognised" when the forget set is fitted better than unseen data: its accuracy above the
   reference's by more than ACC_MARGIN points with the 95 % interval above 0, or the loss attack's
   AUC above 50 + AUC_MARGIN with its interval above 50, or the challenge attack's accuracy above
   50 + AUC_MARGIN with its interval above 50 (it tells the sets apart either way; the AUC's side
   says which);
3. "over-forgets" when the forget set is fitted worse than unseen data by the same margins (the
   absence itself shows: relabelling methods push their forget sets there);
4. "indistinguishable from unseen data on every test" otherwise.

Whole classes (no held-out data of a class the request removed entirely):
1. "inconclusive: too few samples" under MIN_SAMPLES forgotten training images;
2. "still recognised" when the forgotten classes' accuracy on train or test has its 95 % interval
   above CLASS_RECOGNISED (a class never trained on is never predicted);
3. "hidden in the head" when the forgotten classes' logits no longer respond to the input (head
   response below HEAD_FLOOR % of the other classes': a mask, not unlearning);
4. "no longer predicted" otherwise: the outputs no longer name the class. The probe on the features
   and relearn time are shown beside it, not judged: without Retrain there is nothing to say how
   much of a class a model that never saw it still separates.
"""
from __future__ import annotations

import math
from collections import Counter

from .finite import finite

MIN_SAMPLES = 30
ACC_MARGIN = 2.0  # points: smaller accuracy differences are what two samples of one distribution show
AUC_MARGIN = 2.0  # points above / below 50
WIDE_INTERVAL = 10.0  # points: an interval reaching this far from "no difference" cannot rule one out
CLASS_RECOGNISED = 5.0  # % accuracy on a forgotten class
HEAD_FLOOR = 10.0  # % of the other classes' logit spread

INDISTINGUISHABLE = "indistinguishable from unseen data on every test"
STILL_RECOGNISED, OVER_FORGETS, TOO_FEW = "still recognised", "over-forgets", "inconclusive: too few samples"
HIDDEN_IN_HEAD, NO_LONGER_PREDICTED, NOT_MEASURED = "hidden in the head", "no longer predicted", "not measured"
STANDALONE_VERDICTS = (INDISTINGUISHABLE, NO_LONGER_PREDICTED, STILL_RECOGNISED, HIDDEN_IN_HEAD, OVER_FORGETS,
                       TOO_FEW, NOT_MEASURED)
# On a tie between seeds, the aggregate takes the worse: a success is never claimed on half the evidence.
BEST_TO_WORST = (INDISTINGUISHABLE, NO_LONGER_PREDICTED, TOO_FEW, NOT_MEASURED, OVER_FORGETS, HIDDEN_IN_HEAD,
                 STILL_RECOGNISED)


def thresholds() -> str:
    """The thresholds, as printed beside every verdict."""
    return (f"samples: at least {MIN_SAMPLES} per side, intervals within {WIDE_INTERVAL:g} points, accuracy "
            f"margin {ACC_MARGIN:g} points, attack margin {AUC_MARGIN:g} points from 50, 95 % intervals; classes: "
            f"recognised above {CLASS_RECOGNISED:g} % accuracy, head response below {HEAD_FLOOR:g} % is a mask")



def _challenge_interval(row: dict) -> tuple[float, float] | None:
    """The challenge attack's accuracy with a binomial 95 % interval over the samples it scored."""
    acc, n = row.get("challenge_mia_acc"), row.get("challenge_mia_n")
    if not finite(acc, n) or n <= 0:
        return None
    half = 196.0 * math.sqrt(max(acc / 100 * (1 - acc / 100), 0.0) / n)
    return acc - half, acc + half


def sample_verdict(row: dict) -> tuple[str, list[str]]:
    """The verdict of a sample request's row, and the figures behind it."""
    gap, low, high = row.get("unseen_acc_gap"), row.get("unseen_acc_gap_low"), row.get("unseen_acc_gap_high")
    auc, auc_low, auc_high = row.get("unseen_auc"), row.get("unseen_auc_low"), row.get("unseen_auc_high")
    n_forget = round(row.get("forget_n") or 0)
    if not finite(gap, low, high, auc, auc_low, auc_high):
        return NOT_MEASURED, ["no held-out data of the forget set's classes: accuracy gap and loss attack "
                              "cannot be computed"]
    said = [f"forget - unseen accuracy {gap:+.1f} points [{low:+.1f}, {high:+.1f}]",
            f"loss attack AUC {auc:.1f} % [{auc_low:.1f}, {auc_high:.1f}]"]
    challenge = _challenge_interval(row)
    if challenge is not None:
        said.append(f"challenge attack {row['challenge_mia_acc']:.1f} % [{challenge[0]:.1f}, {challenge[1]:.1f}]")
    # the challenge's regression tells the two sets apart whichever side fits better: the AUC says which
    told_apart = challenge is not None and row["challenge_mia_acc"] > 50 + AUC_MARGIN and challenge[0] > 50
    recognised = (gap > ACC_MARGIN and low > 0) or (auc > 50 + AUC_MARGIN and auc_low > 50) or \
        (told_apart and auc > 50)
    if recognised:
        return STILL_RECOGNISED, said
    over = (gap < -ACC_MARGIN and high < 0) or (auc < 50 - AUC_MARGIN and auc_high < 50) or (told_apart and auc < 50)
    if over:
        return OVER_FORGETS, said
    small = (n_forget and n_forget < MIN_SAMPLES) or (row.get("unseen_n") or 0) < MIN_SAMPLES
    wide = max(abs(low), abs(high)) > WIDE_INTERVAL or max(abs(auc_low - 50), abs(auc_high - 50)) > WIDE_INTERVAL
    if small or wide:
        return TOO_FEW, said + [f"{n_forget or '?'} forget and {row.get('unseen_n', 0)} held-out samples"]
    return INDISTINGUISHABLE, said


def class_verdict(row: dict) -> tuple[str, list[str]]:
    """The verdict of a class request's row, and the figures behind it."""
    train, train_low = row.get("class_forget_acc"), row.get("class_forget_acc_low")
    test, test_low = row.get("class_test_acc"), row.get("class_test_acc_low")
    if not finite(train, train_low):
        return NOT_MEASURED, ["the forgotten classes' accuracy was not measured"]
    said = [f"forgotten classes' accuracy {train:.1f} % on train [from {train_low:.1f}]"]
    if finite(test, test_low):
        said.append(f"{test:.1f} % on test [from {test_low:.1f}]")
    head = row.get("head_response")
    if finite(head):
        said.append(f"head response {head:.1f} %")
    for key, label in (("probe_forget_acc", "probe on forgotten"), ("probe_acc", "probe on others' test"),
                       ("relearn_steps", "relearn steps")):
        if finite(row.get(key)):
            said.append(f"{label} {row[key]:.1f}")
    if (row.get("forget_n") or MIN_SAMPLES) < MIN_SAMPLES:
        return TOO_FEW, said
    if train_low > CLASS_RECOGNISED or (finite(test_low) and test_low > CLASS_RECOGNISED):
        return STILL_RECOGNISED, said
    if finite(head) and head < HEAD_FLOOR:
        return HIDDEN_IN_HEAD, said
    return NO_LONGER_PREDICTED, said


def standalone_verdict(row: dict) -> tuple[str, list[str]]:
    """The Retrain-free verdict of one row (class or sample request, told by the figures it carries)."""
    return class_verdict(row) if "class_forget_acc" in row else sample_verdict(row)


def add_standalone_verdicts(rows: list[dict]) -> list[dict]:
    """Set standalone_verdict and standalone_reasons on every per-seed row; aggregated rows (seed None) get the
    most frequent per-seed verdict (the worse one on a tie) and standalone_by_seed ("still recognised 2/3")."""
    for row in rows:
        if row.get("seed", 0) is not None and ("unseen_auc" in row or "class_forget_acc" in row):
            verdict, reasons = standalone_verdict(row)
            row["standalone_verdict"], row["standalone_reasons"] = verdict, "; ".join(reasons)
            row["standalone_thresholds"] = thresholds()
    for row in rows:
        if row.get("seed", 0) is not None:
            continue
        seeds = [r["standalone_verdict"] for r in rows if r.get("seed") is not None and "standalone_verdict" in r
                 and all(r.get(k) == row.get(k) for k in ("model", "request", "method", "epochs"))]
        if not seeds:
            continue
        counts = Counter(seeds)
        severity = {v: i for i, v in enumerate(BEST_TO_WORST)}
        row["standalone_verdict"] = max(counts, key=lambda v: (counts[v], severity.get(v, len(BEST_TO_WORST))))
        row["standalone_by_seed"] = "; ".join(f"{v} {n}/{len(seeds)}" for v, n in counts.most_common())
        row["standalone_thresholds"] = thresholds()
    return rows
