"""results.json, results.md (laid out as the paper's Figure 1) and results.csv."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import storage
from ..config import RunConfig, build, to_yaml
from ..metrics.attacks import attacks_in
from ..metrics.finite import finite
from ..metrics.spec import gap_keys, joined, spec_of
from .answer import answer_markdown
from .basics import (
    budgets_of,
    display_rows,
    fmt,
    inconclusive,
    longest,
    mark_inconclusive,
    method_label,
    method_rank,
    request_heading,
    requests_of_rows,
)
from .grid import cell, evidence_columns, figure1_columns, figure1_rows
from .published import comparison

INCONCLUSIVE_NOTE = ("MIA-Efficacy marked inconclusive: the attacker's accuracy on held-out retain/test samples "
                     "(mean over its shadow draws, with a 95 % interval) was not clearly above chance, so the "
                     "value (in brackets) says nothing about what the model remembers; it is never marked best")


MEMORY_KINDS = {
    "cuda_max_allocated": "CUDA max allocated",
    "cpu_tensor_peak": "peak of live tensor bytes (CPU; comparable with CUDA's max allocated; resident-set "
                       "growth is in results.json as rss_growth_mb)",
    "cpu_peak_rss_growth": "peak resident-set growth (CPU)",
}


def memory_note(rows: list[dict]) -> str:
    """What the rows' peak memory measures, in words."""
    kinds = sorted({r.get("memory_kind") for r in rows} - {None})
    return ", ".join(MEMORY_KINDS.get(k, k) for k in kinds) or "n/a"


# -- what the numbers may be trusted for -------------------------------------------------------------
def row_name(row: dict) -> str:
    """'Finetune (vit, 2 ep)': a row named in running text."""
    budget = f", {row['epochs']} ep" if row.get("epochs") is not None else ""
    return f"{method_label(row['method'])} ({row['model']}{budget})"


def gap_label(key: str) -> str:
    return spec_of(key).label if key in gap_keys() else key


def gap_note(rows: list[dict]) -> str:
    """What the Gap of these rows averages: all four metrics, or (per avg_gap_metrics) fewer where the MIA
    was left out, so that gaps over different metrics are not read as alike."""
    full = joined([gap_label(k) for k in gap_keys()])
    reduced: dict[tuple[str, ...], list[dict]] = {}
    for r in rows:
        metrics = r.get("avg_gap_metrics")
        if finite(r.get("avg_gap")) and isinstance(metrics, list) and list(metrics) != gap_keys():
            reduced.setdefault(tuple(metrics), []).append(r)
    text = f"Gap = mean |difference from Retrain| over {full}"
    if not reduced:
        return text + "."
    with_gap = [r for r in rows if finite(r.get("avg_gap"))]
    if len(reduced) == 1 and len(next(iter(reduced.values()))) == len(with_gap):
        metrics = ", ".join(gap_label(m) for m in next(iter(reduced)))
        return (f"Gap = mean |difference from Retrain| over {metrics} in every row: the MIA was left out because "
                "its attackers were not above chance.")
    parts = [f"over {', '.join(gap_label(m) for m in metrics)} for {', '.join(row_name(r) for r in group)}"
             for metrics, group in reduced.items()]
    return (text + ", except where this row's or Retrain's MIA attacker was not above chance and the MIA was "
            "left out: " + "; ".join(parts) + ".")


def inconclusive_note(rows: list[dict]) -> str:
    """The sentence explaining an inconclusive MIA value; empty when no shown value is one."""
    if not any(inconclusive(r, "mia_efficacy") for r in rows):
        return ""
    gap_known = any(isinstance(r.get("avg_gap_metrics"), list) for r in rows)
    return INCONCLUSIVE_NOTE + (", and it was left out of the Gap." if gap_known
                          else " (this results file does not record whether it entered the Gap).")


def costlier_than_retrain(rows: list[dict]) -> list[str]:
    """The method rows (at their longest budget) whose total time exceeds Retrain's: "LoRA (resnet18, 1.3x)"."""
    out = []
    for r in rows:
        if r["method"] in ("original", "retrain") or not finite(r.get("cost_vs_retrain")) or r["cost_vs_retrain"] <= 1:
            continue
        if longest(rows, r["model"], r["method"]) is r:
            out.append(f"{method_label(r['method'])} ({r['model']}, {r['cost_vs_retrain']:.2f}x)")
    return out


def costlier_note(rows: list[dict]) -> str:
    """The table's flag on methods that cost more than retraining (where retraining is the cheaper answer)."""
    costlier = costlier_than_retrain(rows)
    return (f"Costs more than retraining (total time over Retrain's): {', '.join(costlier)}: where Retrain "
            "passes, retraining is the cheaper answer." if costlier else "")


def busy_warning(results: dict | None) -> str:
    """Why this run's timings must not be compared with others: other processes shared its CPU."""
    load = (results or {}).get("machine_load") or {}
    if not load.get("busy"):
        return ""
    share = load.get("others_cpu_share")
    cores = f" of its {load['cores']} cores" if finite(load.get("cores")) else ""
    who = (f"other processes used {100 * share:.0f} % of the CPU time{cores} during the run" if finite(share)
           else "other processes were using the CPU during the run")
    return (f"Timings were taken on a busy machine ({who}): RTE, total time, cost vs Retrain and wall time are "
            "not comparable with runs on an idle machine.")


def run_warnings(results: dict | None) -> list[str]:
    """Everything a reader must know before trusting the table: a busy machine, then the run's own warnings."""
    found = [busy_warning(results)] + [str(w) for w in ((results or {}).get("warnings") or [])]
    return [w for w in found if w]


# -- results.md -------------------------------------------------------------------------------------
def markdown_grid(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown_table(rows: list[dict], *, results: dict | None = None) -> str:
    """Rows: methods per model; column groups: each metric at each epoch budget, then cost.

    `results` (optional) adds the run's warnings under the table (a busy machine, a mismatched checkpoint).
    """
    rows = display_rows(rows)
    columns = figure1_columns(budgets_of(rows) or [None])
    head = ["Method", *(c.header for c in columns)]
    answer = answer_markdown(rows)
    lines = [answer, ""] if answer else []
    for model in dict.fromkeys(r["model"] for r in rows):
        for request in requests_of_rows(rows):
            mine = [r for r in rows if r["model"] == model and r.get("request") == request]
            if not mine:
                continue
            desc = mine[0].get("model_desc", model)
            heading = request_heading(rows, request)
            body = [[method_label(m), *(c.text for c in cells)] for m, cells in figure1_rows(mine, columns)]
            lines += [f"**{desc}**" + (f", {heading}" if heading else ""), "", *markdown_grid(head, body), ""]
    lines.append(f"{', '.join(gap_label(k) for k in gap_keys())} in percent; the best unlearning is the one closest "
                 "to Retrain (the exact-unlearning reference), not the highest. "
                 f"{gap_note(rows)} Original and Retrain run their "
                 "own recipe (shown in every budget column); RTE, total seconds, cost vs retrain (total / "
                 "Retrain's total) and memory are those of the longest budget. "
                 f"Peak memory: {memory_note(rows)}.")
    lines += [f"\n{note}" for note in [inconclusive_note(rows), costlier_note(rows)] if note]
    lines += [f"\n**Warning:** {w}" for w in run_warnings(results)]
    for table in (published_table(results), evidence_table(rows), attack_table(rows), settings_table(results)):
        if table:
            lines += ["", table]
    return "\n".join(lines) + "\n"


def evidence_rows(rows: list[dict]) -> list[tuple[dict, list[str]]]:
    """Each method's row at its longest budget, per model and request, with its leading cells."""
    sequence = len(requests_of_rows(rows)) > 1
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for request in requests_of_rows(rows):
            mine = [r for r in rows if r["model"] == model and r.get("request") == request]
            for method in sorted(dict.fromkeys(r["method"] for r in mine), key=method_rank):
                r = longest(mine, model, method)
                out.append((r, [model] + ([fmt(request)] if sequence else []) + [method_label(method), fmt(r["epochs"])]))
    return out


def evidence_table(rows: list[dict]) -> str:
    """Verdict, ToW, probe, relearn time, the challenge's attack and U-LiRA of each method at its longest budget."""
    rows = display_rows(rows)
    columns = evidence_columns(rows)
    if not columns:
        return ""
    sequence = len(requests_of_rows(rows)) > 1
    head = ["Model"] + (["Request"] if sequence else []) + ["Method", "Epochs"] + [c.header for c in columns]
    body = [lead + [cell(r, c.spec).text for c in columns] for r, lead in evidence_rows(rows)]
    return "\n".join(["**Evidence beyond the outputs** (each method at its longest budget): " + evidence_caption(rows),
                      "", *markdown_grid(head, body)]) + "\n"


def evidence_caption(rows: list[dict]) -> str:
    """What each evidence column means and the tolerances the verdicts used (from Retrain's spread over seeds)."""
    tolerances = sorted({r["verdict_tolerances"] for r in rows if r.get("verdict_tolerances")})
    return ("ToW = product over forget, retain, test of (1 - |accuracy - Retrain's| / 100), 1 is Retrain; the probe "
            "is a logistic regression on the frozen penultimate features (trained on half of the test set of every "
            "class, scored on the forgotten training samples and on the forgotten classes' other test half); relearn steps = full-batch SGD steps on a fixed share of the "
            "forget set until accuracy on the rest reaches half the original's ('>': not within the cap); head "
            "response = spread of the forgotten classes' logits over the test set, in % of the other classes' (about "
            "Retrain's when unlearned, near 0 when a mask in the head cuts the class off the input); the "
            "challenge attack tells forget from unseen losses (50 = ideal); U-LiRA tells the method's shadow "
            "models from Retrain's per example (50 = indistinguishable). Verdict: does not forget (UA below "
            "Retrain's, or a conclusive MIA differing), over-forgets (UA above), hides (outputs match but probe, "
            "relearn, head response or U-LiRA do not), else matches Retrain; followed by 'damages utility' where "
            "RA or TA is below Retrain's; the "
            "tolerance of each comparison is twice Retrain's std over seeds, never below a floor"
            + (f" (this run: {' | '.join(tolerances)})." if tolerances else "."))


def attack_table(rows: list[dict]) -> str:
    """Every membership attack's efficacy beside its own accuracy on held-out shadow data."""
    attacks = attacks_in(rows)
    if not attacks:
        return ""
    sequence = len(requests_of_rows(rows)) > 1
    head = ["Model"] + (["Request"] if sequence else []) + ["Method", "Epochs"] + [
        f"{a.label} (attacker acc)" for a in attacks]
    lines = ["**Membership-inference attacks**: efficacy = % of forget samples called non-members, mean ± std over "
             "shadow draws; in brackets the attacker's accuracy on held-out retain/test samples (50 = chance).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"]] + ([fmt(r.get("request"))] if sequence else []) + [method_label(r["method"]), fmt(r["epochs"])]
        cells += [f"{attack_cell(r, a.efficacy)} ({fmt(r.get(a.acc), 1, r.get(a.acc + '_spread'))})" for a in attacks]
        lines.append("| " + " | ".join(cells) + " |")
    if any(inconclusive(r, a.efficacy) for r in rows for a in attacks):
        lines += ["", "inconclusive: this attacker's accuracy interval on held-out samples includes chance (50 %): "
                      "its efficacy is no evidence either way."]
    return "\n".join(lines) + "\n"


def attack_cell(row: dict, key: str) -> str:
    """An efficacy with its spread over shadow draws (or over seeds, for aggregated rows)."""
    text = fmt(row.get(key), 1, row.get(f"{key}_std", row.get(f"{key}_spread")))
    return mark_inconclusive(text) if inconclusive(row, key) and text != "-" else text


def _flat(settings: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_rows(results: dict | None) -> tuple[list[str], list[list[str]]]:
    """results.json's method_settings (method -> model -> resolved settings) as one table: the header and
    a row per method and model, each setting a column (blank where a method has no such setting)."""
    settings = (results or {}).get("method_settings") or {}
    flat = {(method, model): _flat(values) for method, per_model in settings.items()
            for model, values in per_model.items()}
    keys: list[str] = []
    for values in flat.values():
        keys += [k for k in values if k not in keys]
    rows = [[method_label(method), model] + ["" if v.get(k) is None else str(v[k]) for k in keys]
            for (method, model), v in flat.items()]
    return ["Method", "Model", *keys], rows


def settings_table(results: dict | None) -> str:
    """The settings each method ran with, exactly as resolved (so a reader sees what ran)."""
    head, rows = settings_rows(results)
    if not rows:
        return ""
    lines = ["**Method settings** (as each method ran: optimiser, batches, augmentation, schedule and the "
             "objective's own values)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def published_rows(results: dict | None) -> tuple[str, list[str], list[list[str]], list[str]] | None:
    """A protocol's rows beside the published figures (report/published.py): source, header, rows, differences."""
    found = comparison(results or {})
    if found is None:
        return None
    source, pairs, differ = found
    head = ["Method"] + [f"{spec_of(key).label} ours / published" for key in (pairs[0][1] if pairs else {})]
    rows = [[method_label(method)] + [f"{fmt(ours, 2)} / {paper:.2f}" for ours, paper in values.values()]
            for method, values in pairs]
    return source, head, rows, differ


def published_table(results: dict | None) -> str:
    found = published_rows(results)
    if found is None:
        return ""
    source, head, rows, differ = found
    lines = [f"**Beside the published figures**: {source}.", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Where this run differs from the published setting: " + ("; ".join(differ) or "nowhere") + "."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    """results.csv: every key of any row a column, in first-seen order (storage.csv_text's cells)."""
    return storage.csv_text(rows, list(dict.fromkeys(k for row in rows for k in row)))


def write_tables(results: dict, out: Path) -> None:
    storage.write_json(out / "results.json", results)
    storage.write_text(out / "results.md", markdown_table(results["rows"], results=results))
    storage.write_text(out / "results.csv", csv_text(results["rows"]))
    storage.write_text(out / "config.yaml", to_yaml(build(RunConfig, results["config"])))
