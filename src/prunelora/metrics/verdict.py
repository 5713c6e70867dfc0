"""A verdict per method: does the model match Retrain, hide the data, or not forget it?

Outputs alone cannot tell removal from hiding (a head that masks a class scores like Retrain on UA
and every output-based attack), so the verdict reads the outputs first and then the evidence
that looks behind them: the linear probe on the features, relearn time and U-LiRA. Every
comparison is with the Retrain row of the same model, request and seed (or the seed means), and
its tolerance comes from Retrain's own spread over the run's seeds: twice the sample std, never
below a floor (the floors alone when a single seed ran). What happened to the data, in order:

1. "does not forget": UA below Retrain's (it still predicts the forget data), or a conclusive
   MIA-Efficacy on both sides that differs from Retrain's, by more than the tolerance;
2. "over-forgets": UA above Retrain's by more than the tolerance (the data's absence shows);
3. "hides": the outputs match, but the probe reads the forgotten data better than on Retrain,
   the data comes back in fewer relearning steps than on Retrain, U-LiRA tells the model
   from Retrain better than it tells Retrain from another Retrain, or the forgotten classes'
   logit no longer answers to the input (metrics/head.py: a mask in the head);
4. "matches Retrain" otherwise;

and "damages utility" where RA or TA is below Retrain's by more than the tolerance, alone or after
what happened to the data ("hides, damages utility"). A verdict never rests on what was not measured:
"not measured" where UA, RA or TA is NaN or missing on the row or on Retrain (a model that diverged, an
empty split), and "inconclusive" instead of "matches Retrain" where evidence both rows carry (the
probe, relearn time, U-LiRA, the head response, a conclusive MIA) is NaN or None on either.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .finite import finite
from .spec import FORGET, HIDES, HIDES_ABOVE, MEMBERSHIP, UTILITY, MetricSpec, floors, verdict_specs

VERDICTS = ("matches Retrain", "hides", "does not forget", "over-forgets", "damages utility", "inconclusive",
            "not measured")
# Smallest tolerance per metric (points, or steps for relearning): what one seed cannot tell apart (spec.py).
FLOORS = floors()
SPREAD_FACTOR = 2.0



def required() -> list[str]:
    """Every verdict reads these: UA, RA, TA."""
    return [s.key for s in verdict_specs(FORGET, UTILITY)]


def tolerances(retrain_rows: list[dict]) -> dict[str, float]:
    """Per metric: max(2 x Retrain's sample std over seeds, the floor)."""
    out = {}
    for key, floor in floors().items():
        values = [r[key] for r in retrain_rows if finite(r.get(key))]
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[key] = max(SPREAD_FACTOR * spread, floor)
    return out


def _conclusive(spec: MetricSpec, row: dict, ref: dict) -> bool:
    return row.get(spec.conclusive) is True and ref.get(spec.conclusive) is True


def verdict(row: dict, ref: dict, tol: dict[str, float]) -> tuple[str, list[str]]:
    """The verdict of a row against its Retrain row, and the comparisons that decided it.

    What happened to the data is named first; a utility loss beside it is added ("hides, damages
    utility"), so that a model that hides the data is never reported as merely less accurate.
    """
    def gap(key: str) -> float | None:
        return row[key] - ref[key] if finite(row.get(key)) and finite(ref.get(key)) else None

    def said(spec: MetricSpec, unit: str = "") -> str:
        key = spec.key
        return f"{spec.reason_label} {row[key]:.1f}{unit} vs Retrain {ref[key]:.1f}{unit} (tolerance {tol[key]:.1f})"

    missing = unmeasured(row, ref, required())
    if missing:
        return "not measured", missing
    damaged = [said(s) for s in verdict_specs(UTILITY) if gap(s.key) is not None and gap(s.key) < -tol[s.key]]
    forgetting, reasons = _forgetting(gap, said, row, ref, tol)
    if damaged:
        return (f"{forgetting}, damages utility" if forgetting else "damages utility"), reasons + damaged
    if forgetting:
        return forgetting, reasons
    collected = [s.key for s in verdict_specs(HIDES) if s.key in row and s.key in ref]
    collected += [s.key for s in verdict_specs(MEMBERSHIP) if _conclusive(s, row, ref)]
    missing = unmeasured(row, ref, collected)
    return ("inconclusive", missing) if missing else ("matches Retrain", reasons)


def unmeasured(row: dict, ref: dict, keys) -> list[str]:
    """A reason per metric among `keys` that is missing or not finite on the row or on Retrain."""
    out = []
    for key in keys:
        sides = [side for side, r in (("this row", row), ("Retrain", ref)) if not finite(r.get(key))]
        if sides:
            out.append(f"{key} not measured on {' and '.join(sides)}")
    return out


def _forgetting(gap, said, row: dict, ref: dict, tol: dict[str, float]) -> tuple[str | None, list[str]]:
    """does not forget / over-forgets / hides, with the comparisons behind it; None when none applies."""
    forget = verdict_specs(FORGET)
    reasons = [said(s) for s in forget if gap(s.key) is not None and gap(s.key) < -tol[s.key]]
    reasons += [said(s) for s in verdict_specs(MEMBERSHIP) if _conclusive(s, row, ref)
                and gap(s.key) is not None and abs(gap(s.key)) > tol[s.key]]
    if reasons:
        return "does not forget", reasons
    over = [said(s) for s in forget if gap(s.key) is not None and gap(s.key) > tol[s.key]]
    if over:
        return "over-forgets", over
    hidden = []
    for s in verdict_specs(HIDES):
        g = gap(s.key)
        if g is not None and (g > tol[s.key] if s.verdict == HIDES_ABOVE else g < -tol[s.key]):
            hidden.append(said(s, " %" if s.unit == "%" else ""))
    return ("hides", hidden) if hidden else (None, [])


def _rank(label: str) -> int:
    first = label.split(",")[0]
    return VERDICTS.index(first) if first in VERDICTS else len(VERDICTS)


def add_verdicts(rows: list[dict]) -> list[dict]:
    """Set verdict, verdict_reasons and verdict_tolerances on every row that has a Retrain row to compare with.

    Aggregated rows (seed None) are judged on the seed means and also carry verdict_by_seed, the
    count of each per-seed verdict ("hides 2/3; matches Retrain 1/3").
    """
    per_seed = defaultdict(list)
    for r in rows:
        if r["method"] == "retrain" and r.get("seed") is not None:
            per_seed[(r["model"], r.get("request"))].append(r)
    refs = {(r["model"], r.get("request"), r.get("seed")): r for r in rows if r["method"] == "retrain"}
    for row in rows:
        ref = refs.get((row["model"], row.get("request"), row.get("seed")))
        if ref is None:
            continue
        tol = tolerances(per_seed[(row["model"], row.get("request"))])
        row["verdict"], reasons = verdict(row, ref, tol)
        row["verdict_reasons"] = "; ".join(reasons)
        row["verdict_tolerances"] = ", ".join(f"{k} {v:.1f}" for k, v in tol.items())
    for row in rows:
        if row.get("seed", 0) is None and "verdict" in row:
            seeds = [r.get("verdict") for r in rows if r.get("seed") is not None and r["model"] == row["model"]
                     and r.get("request") == row.get("request") and r["method"] == row["method"]
                     and r["epochs"] == row["epochs"] and r.get("verdict")]
            counts = {v: seeds.count(v) for v in sorted(set(seeds), key=lambda v: (_rank(v), v))}
            row["verdict_by_seed"] = "; ".join(f"{v} {n}/{len(seeds)}" for v, n in counts.items())
    return rows
