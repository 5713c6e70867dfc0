"""The causal-LM table: one row per method, mean +- std over seeds, in results.md and on stdout."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .tables import run_warnings

COLUMNS = (  # (row field, header, digits)
    ("forget_quality", "Forget quality (KS p)", 3),
    ("model_utility", "Model utility", 3),
    ("forget_rouge_l", "ROUGE-L forget", 3),
    ("retain_rouge_l", "ROUGE-L retain", 3),
    ("forget_prob", "P(answer) forget", 3),
    ("mia_min_k_auc", "MIA AUC (Min-K %)", 3),
    ("privleak", "PrivLeak %", 1),
    ("sec_per_step", "s / step", 4),
    ("peak_memory_mb", "Tensor peak MB", 1),
    ("trainable_params", "Trainable params", 0),
)


def cell(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values)):.{digits}f}"


def verdict_cell(rows: list[dict[str, Any]], field: str) -> str:
    found = [r.get(field) for r in rows if r.get(field)]
    if not found:
        return "-"
    counts: dict[str, int] = {}
    for v in found:
        counts[v] = counts.get(v, 0) + 1
    return "; ".join(f"{v} ({n}/{len(rows)})" if len(counts) > 1 or len(rows) > 1 else v for v, n in counts.items())


def table(results: dict[str, Any]) -> str:
    rows = results["rows"]
    order = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    header = ["Method", *(h for _, h, _ in COLUMNS), "Verdict (vs Retrain)", "Verdict (no Retrain)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in order:
        group = [r for r in rows if r["method"] == name]
        cells = [group[0]["label"]] + [cell([r.get(f) for r in group], d) for f, _, d in COLUMNS]
        cells += [verdict_cell(group, "verdict"), verdict_cell(group, "standalone_verdict")]
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0] if rows else {}
    intro = (f"Causal LM, forget {first.get('forget_n', '?')} examples ({first.get('request', '')}), retain "
             f"{first.get('retain_n', '?')}, holdout {first.get('holdout_n', '?')}; seeds {','.join(map(str, seeds))} "
             "(mean ± std).")
    lines += [f"\n**Warning:** {w}" for w in run_warnings(results)]
    return intro + "\n\n" + "\n".join(lines)
