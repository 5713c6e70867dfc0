"""results.json, results.md (laid out as the paper's Figure 1) and results.csv."""
from __future__ import annotations

import csv
import io as stdio
import math
from pathlib import Path
from typing import Any

from .. import io

METRICS = [("ua", "UA"), ("mia_efficacy", "MIA-Efficacy"), ("ra", "RA"), ("ta", "TA"), ("avg_gap", "Gap")]
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
    head += ["RTE (s/epoch)", "Total (s)", "Cost vs retrain", "Peak mem (MB)", "Trainable"]
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
            cells += [fmt(last.get("sec_per_epoch"), 1, last.get("sec_per_epoch_std")),
                      fmt(last.get("total_sec"), 1, last.get("total_sec_std")),
                      fmt(last.get("cost_vs_retrain"), 2, last.get("cost_vs_retrain_std")),
                      fmt(last.get("peak_memory_mb"), 0, last.get("peak_memory_mb_std")),
                      fmt(int(last["trainable_params"]) if last.get("trainable_params") is not None else None)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    kind = {r.get("memory_kind") for r in rows} - {None}
    lines.append("UA, MIA-Efficacy, RA, TA in percent. Gap = mean |difference| from Retrain over UA, MIA-Efficacy, "
                 "RA and TA. Original and Retrain run their own recipe (shown in every budget column); RTE, "
                 "total seconds, cost vs retrain (total / Retrain's total) and memory are those of the longest "
                 f"budget. Peak memory: {', '.join(sorted(kind)) or 'n/a'}.")
    attacks = attack_table(rows)
    if attacks:
        lines += ["", attacks]
    return "\n".join(lines) + "\n"


def attack_names(rows: list[dict]) -> list[tuple[str, str]]:
    """(efficacy key, attacker-accuracy key) pairs present in the rows, the paper's default first."""
    pairs = [("mia_efficacy", "mia_attack_acc")] if any("mia_attack_acc" in r for r in rows) else []
    keys = dict.fromkeys(k for r in rows for k in r)
    for key in keys:
        if key.startswith("mia_") and f"{key}_acc" in keys and not key.endswith("_std"):
            pairs.append((key, f"{key}_acc"))
    return pairs


def attack_table(rows: list[dict]) -> str:
    """Every membership attack's efficacy beside its own accuracy on held-out shadow data."""
    pairs = attack_names(rows)
    if not pairs:
        return ""
    head = ["Model", "Method", "Epochs"] + [f"{eff} (attacker acc)" for eff, _ in pairs]
    lines = ["**Membership-inference attacks**: efficacy = % of forget samples called non-members; in "
             "brackets the attacker's accuracy on held-out retain/test samples (50 = chance).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], METHOD_LABEL.get(r["method"], r["method"]), fmt(r["epochs"])]
        cells += [f"{fmt(r.get(eff), 1, r.get(eff + '_std'))} ({fmt(r.get(acc), 1, r.get(acc + '_std'))})"
                  for eff, acc in pairs]
        lines.append("| " + " | ".join(cells) + " |")
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
