"""Rows -> evidence: the gap to the exact baseline (as in SalUn) and mean ± std over seeds."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .finite import finite
from .spec import FORGET, UTILITY, gap_keys, spec_of, verdict_specs


def gap_metrics(row: dict, ref: dict) -> list[str]:
    """The metrics a row's gap to Retrain is taken over (spec.gap_keys).

    A metric with a conclusive flag (MIA-Efficacy) counts only where both attackers (the row's and
    Retrain's) are above chance: otherwise it is noise, and on small data it decided the ranking (the
    digits ViT's untouched original ranked closest to a Retrain whose attacker sat at 45 %).
    """
    def counts(key: str) -> bool:
        flag = spec_of(key).conclusive
        return flag is None or bool(row.get(flag, True) and ref.get(flag, True))

    return [k for k in gap_keys() if counts(k)]


def tug_of_war(row: dict, ref: dict) -> float | None:
    """ToW (Zhao et al. 2024): the product over forget, retain and test of 1 - |accuracy - Retrain's| / 100.

    1 is Retrain itself; the forget accuracy's difference is UA's (UA = 100 - forget accuracy). None where
    one of them was not measured (NaN) on either row.
    """
    keys = [s.key for s in verdict_specs(FORGET, UTILITY)]  # UA, RA, TA
    if not all(finite(row.get(k)) and finite(ref.get(k)) for k in keys):
        return None
    return float(np.prod([1.0 - abs(row[k] - ref[k]) / 100.0 for k in keys]))


def gap_to(row: dict, ref: dict) -> float | None:
    """The mean |row - Retrain| over the gap's metrics (gap_metrics), or None where one is not measured."""
    keys = gap_metrics(row, ref)
    if not keys or not all(finite(row.get(k)) and finite(ref.get(k)) for k in keys):
        return None
    return float(np.mean([abs(row[k] - ref[k]) for k in keys]))


def add_retrain_gap(rows: list[dict]) -> list[dict]:
    """Set avg_gap (mean |row - retrain| over UA, MIA-Efficacy, RA, TA), tow and cost_vs_retrain on every row.

    The reference is the Retrain row of the same model, seed and request; where none ran, both are None.
    An inconclusive MIA is left out (avg_gap_metrics lists what was averaged). A metric not measured (NaN or
    missing) on either row is never averaged around: avg_gap and tow are then None and avg_gap_unmeasured
    names the metrics.
    """
    retrain = {(r["model"], r.get("seed"), r.get("request")): r for r in rows if r["method"] == "retrain"}
    for row in rows:
        ref = retrain.get((row["model"], row.get("seed"), row.get("request")))
        if ref is None:
            row["avg_gap"] = row["cost_vs_retrain"] = row["tow"] = None
            continue
        row["tow"] = tug_of_war(row, ref)
        row["avg_gap_metrics"] = gap_metrics(row, ref)
        missing = [k for k in row["avg_gap_metrics"] if not (finite(row.get(k)) and finite(ref.get(k)))]
        if missing:
            row["avg_gap"], row["avg_gap_unmeasured"] = None, missing
        else:
            row["avg_gap"] = float(np.mean([abs(row[k] - ref[k]) for k in row["avg_gap_metrics"]]))
        row["cost_vs_retrain"] = row["total_sec"] / ref["total_sec"] if ref["total_sec"] else None
    return rows


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)



def aggregate_seeds(rows: list[dict]) -> list[dict]:
    """One row per (model, request, method, epochs) with the mean in <key> and the sample std in <key>_std.

    Aggregated rows carry seed None and n_seeds; non-numeric keys are taken from the first seed. A number
    missing (None) on some seed has no mean (None), never one over the other seeds alone.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("seed") is not None:
            groups[(row["model"], row.get("request"), row["method"], row["epochs"])].append(row)
    out = []
    for (model, _, method, epochs), group in groups.items():
        agg: dict = {"model": model, "method": method, "epochs": epochs}
        if "request" in group[0]:
            agg["request"] = group[0]["request"]
        for key in group[0]:
            if key in agg or key in ("seed", "logits_file"):
                continue
            values = [r.get(key) for r in group]
            if all(isinstance(v, bool) for v in values):  # a flag holds for the mean only if it held for every seed
                agg[key] = all(values)
            elif all(isinstance(v, list) for v in values):
                agg[key] = [v for v in values[0] if all(v in other for other in values)]
            elif all(_is_number(v) for v in values):
                arr = np.array(values, dtype=float)
                agg[key] = float(np.mean(arr))
                agg[f"{key}_std"] = float(np.std(arr, ddof=1)) if len(arr) > 1 else 0.0
            elif any(_is_number(v) for v in values) and all(_is_number(v) or v is None for v in values):
                agg[key] = agg[f"{key}_std"] = None  # not measured on some seed: no mean over the others
            else:
                agg[key] = values[0]
        agg["seed"] = None
        agg["n_seeds"] = len(group)
        out.append(agg)
    return out
