"""A search's report: the answer, every trial (settings, cost, evidence, how it ended) and cost against distance.

Read by results.md (search_markdown), trials.csv (trials_csv) and report.html (search_html, with the plot of
each trial's cost against its distance from passing and the Pareto front of the two), for both tasks.
"""
from __future__ import annotations

from html import escape
from typing import Any

from .. import storage
from .figures import figure_html
from .markup import para, section, tag
from .plots import new_figure

SHOWN = ("ua", "ra", "ta", "mia_efficacy", "unseen_acc_gap", "class_forget_acc", "forget_prob", "forget_rouge_l",
         "mia_min_k_auc", "model_utility", "retain_utility", "forget_quality", "privleak")


def _settings(setting: dict[str, Any]) -> str:
    parts = []
    for key, value in setting.items():
        if key == "method":
            continue
        short = key.split(".")[-1]
        parts.append(f"{short} {value:.3g}" if isinstance(value, float) else f"{short} {value}")
    return ", ".join(parts) or "defaults"


def _ended(trial: dict[str, Any]) -> str:
    if trial["state"] != "complete":
        return f"stopped: {trial.get('stopped') or trial['state']}"
    return ("passed" if trial["passed"] else "failed") + f" ({trial['verdict']})"


def pareto(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials no other beats on both cost and distance (complete ones), cheapest first."""
    done = sorted((t for t in trials if t["state"] == "complete" and t.get("distance") is not None),
                  key=lambda t: (t["cost"], t["distance"]))
    front, best = [], float("inf")
    for trial in done:
        if trial["distance"] < best:
            front.append(trial)
            best = trial["distance"]
    return front


def search_markdown(blocks: list[dict[str, Any]]) -> str:
    """Each search's answer, budget and trials, as Markdown (atop results.md)."""
    lines = []
    for block in blocks:
        budget = (f"{block['budget_samples']} training samples (Retrain's cost)" if block.get("budget_samples")
                  else f"{block.get('budget_seconds')} s of training")
        if block.get("patience") is not None:
            budget += f", patience {block['patience']} trials after the cheapest pass"
        lines += [f"## Search: {block['model']}, seed {block['seed']}", "", f"**{block['answer']}**", "",
                  f"Budget {budget}; spent {block['spent_samples']} samples in {len(block['trials'])} trials "
                  f"({block['seconds']:.1f} s); {'against Retrain' if block['with_retrain'] else 'without Retrain'}"
                  f"; settings chosen on {len(block['selection_ids'])} held-out samples, the verdict measured on "
                  f"{len(block['verdict_ids'])} others (the more settings tried, the more one passes by chance).", ""]
        if block.get("reproduce"):
            lines += [f"Without searching: `{block['reproduce']}`", ""]
        lines += ["| trial | method | settings | cost (samples) | seconds | distance | how it ended |",
                  "|---:|---|---|---:|---:|---:|---|"]
        for t in block["trials"]:
            distance = f"{t['distance']:.3f}" if t.get("distance") is not None else "-"
            lines.append(f"| {t['number']} | {t['setting'].get('method', '?')}{' (defaults)' if t['defaults'] else ''} "
                         f"| {_settings(t['setting'])} | {t['cost']} | {t['seconds']:.1f} | {distance} | {_ended(t)} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def trials_csv(blocks: list[dict[str, Any]]) -> str:
    """Every trial of every search, one line each: where, settings, cost, how it ended and its figures."""
    rows = []
    for block in blocks:
        for t in block["trials"]:
            rows.append({"model": block["model"], "seed": block["seed"], "trial": t["number"], "state": t["state"],
                         "defaults": t["defaults"], "cost_samples": t["cost"], "seconds": round(t["seconds"], 3),
                         "passed": t["passed"], "distance": t.get("distance"), "verdict": t["verdict"],
                         "stopped": t.get("stopped", ""), **t["setting"],
                         **{k: t["figures"][k] for k in SHOWN if k in t.get("figures", {})}})
    return storage.csv_text(rows, list(dict.fromkeys(k for r in rows for k in r)))


def cost_distance_figure(block: dict[str, Any]):
    """Each complete trial's cost (share of the budget) against its distance from passing; the Pareto front."""
    done = [t for t in block["trials"] if t["state"] == "complete" and t.get("distance") is not None]
    if not done:
        return None
    scale = block.get("budget_samples") or max(t["cost"] for t in done) or 1
    fig = new_figure(4.6, 3.2)
    ax = fig.subplots()
    for passed, colour, label in ((True, "#2ca02c", "passed"), (False, "#d62728", "failed")):
        chosen = [t for t in done if t["passed"] == passed]
        if chosen:
            ax.scatter([t["cost"] / scale for t in chosen], [t["distance"] for t in chosen], s=18, c=colour,
                       label=label, alpha=0.8)
    front = pareto(block["trials"])
    ax.plot([t["cost"] / scale for t in front], [t["distance"] for t in front], color="#333", lw=1, ls="--",
            label="Pareto front")
    ax.set_xlabel("cost (share of the budget)" if block.get("budget_samples") else "cost (samples)")
    ax.set_ylabel("distance from passing")
    ax.legend(fontsize=7)
    return fig


def search_html(results: dict[str, Any]) -> str:
    """The search section of report.html ("" without a search)."""
    parts = []
    for block in results.get("search") or []:
        head = ["trial", "method", "settings", "cost", "s", "distance", "how it ended"]
        body = "".join(tag("tr", "".join(tag("td", escape(str(c))) for c in (
            t["number"], t["setting"].get("method", "?") + (" (defaults)" if t["defaults"] else ""),
            _settings(t["setting"]), t["cost"], f"{t['seconds']:.1f}",
            f"{t['distance']:.3f}" if t.get("distance") is not None else "-", _ended(t)))) for t in block["trials"])
        fig = cost_distance_figure(block)
        plot = figure_html(fig, "cost against distance", "Each trial's cost against its distance from passing "
                           "(0: passed); the dashed line is the Pareto front.") if fig is not None else ""
        parts.append(section(f"Search: {block['model']}, seed {block['seed']}", para(escape(block["answer"])),
                             *([para(escape("Without searching: " + block["reproduce"]), "note")]
                               if block.get("reproduce") else []),
                             tag("div", tag("table", tag("tr", "".join(tag("th", h) for h in head)) + body),
                                 class_="scroll"), plot))
    return "".join(parts)
