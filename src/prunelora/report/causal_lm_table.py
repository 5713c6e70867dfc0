"""The causal-LM table: one row per method, mean ± std over seeds, in results.md and on stdout; results.csv.

The columns are the metric registry's (metrics/spec.py, metrics/causal_lm/specs.py): the causal-LM task's
main figures, then its cost columns, each with its label and decimals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import storage
from ..metrics.causal_lm import specs as _causal_lm_specs  # noqa: F401 - registers the task's specs
from ..metrics.finite import finite, mean_std
from ..metrics.spec import COST, FIGURE1, MetricSpec, specs
from ..registry import CAUSAL_LM
from .tables import run_warnings


def columns() -> list[MetricSpec]:
    """The table's figures: the task's main figures, then its cost columns, in registry order."""
    return [*specs(FIGURE1, task=CAUSAL_LM), *specs(COST, task=CAUSAL_LM)]


def cell(values: list[float], digits: int) -> str:
    """Mean ± sample std over the seeds that measured it (metrics.finite.mean_std); "-" when none did."""
    mean, std = mean_std(values)
    if mean is None:
        return "-"
    if sum(finite(v) for v in values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


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
    shown = columns()
    header = ["Method", *(s.label for s in shown), "Verdict (vs Retrain)", "Verdict (no Retrain)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in order:
        group = [r for r in rows if r["method"] == name]
        cells = [group[0]["label"]] + [cell([r.get(s.key) for r in group], s.digits) for s in shown]
        cells += [verdict_cell(group, "verdict"), verdict_cell(group, "standalone_verdict")]
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0] if rows else {}
    intro = (f"Causal LM, forget {first.get('forget_n', '?')} examples ({first.get('request', '')}), retain "
             f"{first.get('retain_n', '?')}, holdout {first.get('holdout_n', '?')}; seeds {','.join(map(str, seeds))} "
             "(mean ± std).")
    lines += [f"\n**Warning:** {w}" for w in run_warnings(results)]
    return intro + "\n\n" + "\n".join(lines)


def write_csv(results: dict[str, Any], out: Path) -> Path:
    """results.csv: one line per row (every seed and method), the registry's columns first, then the rest."""
    rows = results["rows"]
    first = ["model", "method", "label", "seed", *(s.key for s in columns())]
    rest = [k for k in dict.fromkeys(k for r in rows for k in r if not isinstance(r[k], (dict, list)))
            if k not in first]
    path = Path(out) / "results.csv"
    storage.write_text(path, storage.csv_text(rows, first + rest))
    return path
