"""results.json, results.md (laid out as the paper's Figure 1) and results.csv."""
from __future__ import annotations

import csv
import io as stdio
import math
from pathlib import Path
from typing import Any

from .. import io

METRICS = [("ua", "UA"), ("mia_efficacy", "MIA-Efficacy"), ("ra", "RA"), ("ta", "TA")]
METHOD_ORDER = ["original", "retrain", "finetune", "prune-finetune", "lora", "prunelora"]
METHOD_LABEL = {"original": "Original", "retrain": "Retrain", "finetune": "Finetune",
                "prune-finetune": "Prune+Finetune", "lora": "LoRA", "prunelora": "PruneLoRA"}


def fmt(value: Any, digits: int = 2, std: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text


def display_rows(rows: list[dict]) -> list[dict]:
    """The rows a table shows: aggregated rows when several seeds ran, else the single seed's rows."""
    aggregated = [r for r in rows if r.get("seed", 0) is None]
    return aggregated or rows


def budgets_of(rows: list[dict]) -> list[int]:
    return sorted({r["epochs"] for r in rows if r["epochs"] is not None})


def markdown_table(rows: list[dict]) -> str:
    """Rows: methods per model; column groups: each metric at each epoch budget, then cost."""
    rows = display_rows(rows)
    budgets = budgets_of(rows) or [None]
    head = ["Method"]
    for _, label in METRICS:
        head += [f"{label} {b} ep" if b is not None else label for b in budgets]
    head += ["RTE (s/epoch)", "Total (s)", "Peak mem (MB)", "Trainable"]
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        desc = mine[0].get("model_desc", model)
        lines += [f"**{desc}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        methods = sorted(dict.fromkeys(r["method"] for r in mine),
                         key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
        for method in methods:
            group = {r["epochs"]: r for r in mine if r["method"] == method}
            last = group[max(group, key=lambda e: -1 if e is None else e)]
            cells = [METHOD_LABEL.get(method, method)]
            for key, _ in METRICS:
                for b in budgets:
                    r = group.get(b, group.get(None))
                    cells.append(fmt(r.get(key), std=r.get(f"{key}_std")) if r else "-")
            cells += [fmt(last.get("sec_per_epoch"), 1), fmt(last.get("total_sec"), 1),
                      fmt(last.get("peak_memory_mb"), 0), fmt(last.get("trainable_params"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    kind = {r.get("memory_kind") for r in rows} - {None}
    if kind:
        lines.append(f"Peak memory: {', '.join(sorted(kind))}. Original and Retrain run their own recipe "
                     "(shown in every budget column); RTE and memory are those of the longest budget.")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = stdio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in keys})
    return buffer.getvalue()


def write_tables(results: dict, out: Path) -> None:
    from ..config import RunConfig, _build, to_yaml

    io.write_json(out / "results.json", results)
    io.write_text(out / "results.md", markdown_table(results["rows"]))
    io.write_text(out / "results.csv", csv_text(results["rows"]))
    io.write_text(out / "config.yaml", to_yaml(_build(RunConfig, results["config"])))
