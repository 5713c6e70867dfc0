"""The answer a report opens with: which model to ship, its verdict and cost, or "none of these passed".

A team that ran prunelora wants to know what to deliver before it reads any table. The answer is,
per model (and for the latest request of a sequence), the cheapest row (least total seconds) whose
evidence supports it:

* where Retrain ran, a row whose verdict is "matches Retrain" (Retrain itself qualifies: exact,
  but the most expensive; a method that costs more than it, or whose cost was not measured, is never
  shipped over it);
* otherwise, a row whose Retrain-free verdict (metrics/standalone.py) says the data is gone from
  what the model shows ("indistinguishable from unseen data on every test", "no longer predicted")
  and whose test accuracy is within UTILITY_DROP points of the original's.

The original model never qualifies. Where several seeds ran, the seed means' verdicts are read.
"""
from __future__ import annotations

import math

from ..metrics.finite import finite
from ..metrics.standalone import INDISTINGUISHABLE, NO_LONGER_PREDICTED
from .basics import display_rows, method_label, requests_of_rows

PASSING_STANDALONE = (INDISTINGUISHABLE, NO_LONGER_PREDICTED)
UTILITY_DROP = 2.0  # points of test accuracy below the original's that still count as keeping utility



def _passes(row: dict, original: dict | None, with_retrain: bool) -> bool:
    if with_retrain:
        return row.get("verdict") == "matches Retrain"
    if row.get("standalone_verdict") not in PASSING_STANDALONE:
        return False
    if original is None or not (finite(row.get("ta")) and finite(original.get("ta"))):
        return False
    return row["ta"] >= original["ta"] - UTILITY_DROP


def _budget(row: dict) -> str:
    return f", {row['epochs']} epochs" if row.get("epochs") is not None else ""


def answers(rows: list[dict]) -> list[str]:
    """One sentence per model: what to ship and why, or that nothing passed."""
    shown = display_rows(rows)
    requests = requests_of_rows(shown)
    latest = [r for r in shown if r.get("request") == requests[-1]] if requests else shown
    out = []
    for model in dict.fromkeys(r["model"] for r in latest):
        mine = [r for r in latest if r["model"] == model]
        original = next((r for r in mine if r["method"] == "original"), None)
        with_retrain = any(r["method"] == "retrain" for r in mine)
        candidates = [r for r in mine if r["method"] != "original" and _passes(r, original, with_retrain)]
        basis = "its verdict against Retrain" if with_retrain else "the evidence that needs no Retrain"
        if not candidates:
            out.append(f"{model}: none of these passed on {basis}; do not ship any of them as unlearned "
                       "(see the verdicts below for what each still shows).")
            continue
        best = min(candidates, key=lambda r: (r.get("total_sec") if finite(r.get("total_sec")) else math.inf))
        retrain = next((r for r in candidates if r["method"] == "retrain"), None)
        if retrain is not None and not finite(best.get("total_sec")):
            best = retrain  # a cost not measured is never shipped over a Retrain that passed
        verdict = best.get("verdict") if with_retrain else best.get("standalone_verdict")
        cost = f"{best['total_sec']:.1f} s" if finite(best.get("total_sec")) else "cost not measured"
        memory = f", peak memory {best['peak_memory_mb']:.0f} MB" if finite(best.get("peak_memory_mb")) else ""
        others = len(candidates) - 1
        out.append(f"{model}: ship {method_label(best['method'])}{_budget(best)}: {verdict} ({basis}), "
                   f"the cheapest that passed ({cost}{memory})"
                   + (f"; {others} other row(s) passed at a higher cost." if others else "."))
    return out


def answer_markdown(rows: list[dict]) -> str:
    """results.md's opening lines."""
    lines = answers(rows)
    return "\n".join(["**Answer:** " + lines[0], *lines[1:]]) if lines else ""
