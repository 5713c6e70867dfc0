"""report.html of a causal-LM run: one self-contained page (no network, figures inlined) from results.json
and the per-example exports, built from the image report's blocks (markup, figures, stylesheet).

    python -m prunelora.report.causal_lm_page OUT_DIR      # (re)writes OUT_DIR/report.html from its results.json

It answers first (which method comes closest to Retrain, at what memory), then shows the table of
results.md with every seed's verdicts and reasons, two figures (forget quality against model utility;
the forget set's truth ratios of each method beside Retrain's, the distribution TOFU's forget quality
tests), the originals, each method's settings, and the configuration and machine.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .. import storage
from ..metrics.finite import finite
from .causal_lm_table import cell, columns, verdict_cell
from .figures import figure_html
from .html import rewrite_main
from .markup import kv_table, para, plain, section, tag
from .page import warnings_html
from .plots import new_figure
from .style import CSS

MATCH = "matches Retrain"  # also when ", damages utility" follows: the original's utility, Retrain's too



def _mean(rows: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in rows if finite(r.get(field))]
    return float(np.mean(values)) if values else None


def _shown(rows: list[dict[str, Any]], field: str, digits: int, unit: str = "") -> str:
    value = _mean(rows, field)
    return "not measured" if value is None else f"{value:.{digits}f}{unit}"


def utility_key(rows: list[dict[str, Any]]) -> str:
    """TOFU's model utility where the run measured it (tofu:DIR data), else the retain utility."""
    return "model_utility" if any(finite(r.get("model_utility")) for r in rows) else "retain_utility"


def groups(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rows by method, in the run's order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in results.get("rows", []):
        out.setdefault(row["method"], []).append(row)
    return out


def closest(results: dict[str, Any]) -> list[str]:
    """The answer, in sentences: which unlearning methods came closest to Retrain and at what memory."""
    by_method = groups(results)
    candidates = {m: rows for m, rows in by_method.items() if rows[0].get("objective") not in ("retrain", "original")}
    if not candidates:
        return ["Only Retrain ran: there is nothing to compare with it."]
    n = len(next(iter(candidates.values())))
    if not any(finite(r.get("forget_quality")) for rows in candidates.values() for r in rows):
        return ["No Retrain row or no truth ratios: forget quality was not measured; the verdicts without "
                "Retrain below rest on the Min-K % attack alone."]

    def rank(item: tuple[str, list[dict[str, Any]]]) -> tuple[int, float]:
        rows = item[1]
        return (-sum(str(r.get("verdict") or "").startswith(MATCH) for r in rows), -(_mean(rows, "forget_quality") or 0.0))

    ordered = sorted(candidates.items(), key=rank)
    lines = []
    matching = [(m, rows) for m, rows in ordered if any(str(r.get("verdict") or "").startswith(MATCH) for r in rows)]
    if matching:
        lines.append("Matches Retrain (forget quality, PrivLeak and utility within the thresholds): " + "; ".join(
            f"{rows[0]['label']} on {sum(r.get('verdict') == MATCH for r in rows)}/{len(rows)} seeds"
            for m, rows in matching) + ".")
    else:
        lines.append(f"No method matches Retrain on any of the {n} seed{'s' if n != 1 else ''}.")
    top = ordered[:3]
    lines.append("Closest by forget quality (mean over seeds): " + "; ".join(
        f"{rows[0]['label']} {_shown(rows, 'forget_quality', 3)} (utility {_shown(rows, utility_key(rows), 3)}, "
        f"tensor peak {_shown(rows, 'peak_memory_mb', 1, ' MB')})" for m, rows in top) + ".")
    retrain = [rows for rows in by_method.values() if rows[0].get("objective") == "retrain"]
    if retrain and finite(_mean(retrain[0], "mia_min_k_auc")):
        lines.append(f"Retrain's Min-K % AUC (forget vs holdout) is {_mean(retrain[0], 'mia_min_k_auc'):.3f}: an "
                     "unlearned model should be near it, neither above (still recognised) nor far below "
                     "(over-forgets, itself a signal to an attacker).")
    return lines


def table_html(results: dict[str, Any]) -> str:
    shown = columns()
    head = ["Method", *(s.label for s in shown), "Verdict (vs Retrain)", "Verdict (no Retrain)"]
    body = []
    for rows in groups(results).values():
        cells = [tag("th", escape(rows[0]["label"]), scope="row")]
        cells += [tag("td", escape(cell([r.get(s.key) for r in rows], s.digits)), class_="num") for s in shown]
        cells += [tag("td", escape(verdict_cell(rows, f))) for f in ("verdict", "standalone_verdict")]
        body.append(tag("tr", "".join(cells)))
    return tag("div", tag("table", tag("tr", "".join(tag("th", escape(h)) for h in head)) + "".join(body)),
               class_="scroll")


def verdicts_html(results: dict[str, Any]) -> str:
    """Every seed's verdicts and the reasons behind them."""
    body = []
    for row in results.get("rows", []):
        with_r = row.get("verdict") or "-"
        if row.get("verdict_reasons"):
            with_r += ": " + "; ".join(row["verdict_reasons"])
        alone = (row.get("standalone_verdict") or "-") + (
            ": " + "; ".join(row["standalone_reasons"]) if row.get("standalone_reasons") else "")
        body.append(tag("tr", tag("th", escape(row["label"]), scope="row") + tag("td", escape(str(row["seed"])))
                        + tag("td", escape(with_r)) + tag("td", escape(alone))))
    head = "".join(tag("th", h) for h in ("Method", "Seed", "With Retrain", "Without Retrain"))
    return tag("div", tag("table", tag("tr", head) + "".join(body)), class_="scroll")


def tradeoff_figure(results: dict[str, Any]):
    """Forget quality (log) against model utility, one point per method (mean over seeds)."""
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    for rows in groups(results).values():
        fq, mu = _mean(rows, "forget_quality"), _mean(rows, utility_key(rows))
        if fq is None or mu is None:
            continue
        shown = max(fq, 1e-12)
        ax.scatter([mu], [shown], s=30)
        ax.annotate(rows[0]["label"], (mu, shown), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.axhline(0.05, color="#999", lw=0.8, ls="--")
    ax.set_xlabel("model utility (retain side)")
    ax.set_ylabel("forget quality (KS p, log)")
    return fig


def read_examples(out: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-example measures a row's model was summarised from (its examples_file), or [] when gone."""
    path = out / str(row.get("examples_file") or "")
    if not row.get("examples_file") or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truth_ratio_figure(results: dict[str, Any], out: Path, seed: int):
    """Per method, the forget set's truth ratios beside Retrain's (what forget quality's KS test compares);
    None when the exports hold no truth ratios."""
    by_method = groups(results)
    ratios = {}
    for method, rows in by_method.items():
        row = next((r for r in rows if r.get("seed") == seed), rows[0])
        values = [e["truth_ratio"] for e in read_examples(out, row)
                  if e.get("split") == "forget" and finite(e.get("truth_ratio"))]
        if values:
            ratios[method] = np.array(values)
    retrain = next((m for m, rows in by_method.items() if rows[0].get("objective") == "retrain"), None)
    shown = [m for m in ratios if m != retrain]
    if retrain not in ratios or not shown:  # nothing to set beside Retrain's
        return None
    cols = min(4, len(shown))
    nrows = -(-len(shown) // cols)
    fig = new_figure(2.8 * cols, 2.3 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    every = np.concatenate(list(ratios.values()))
    bins = np.linspace(float(every.min()), float(every.max()) + 1e-9, 25)
    for ax, method in zip(axes, shown):
        ax.hist(ratios[retrain], bins=bins, alpha=0.5, label="Retrain", color="#1f77b4")
        ax.hist(ratios[method], bins=bins, alpha=0.5, label=by_method[method][0]["label"], color="#ff7f0e")
        ax.set_title(by_method[method][0]["label"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    return fig


def originals_html(results: dict[str, Any]) -> str:
    rows = [r for r in results.get("rows", []) if r.get("method") == "original"]
    if not rows:
        return ""
    keys = ["seed", "forget_prob", "retain_prob", "holdout_prob", "forget_rouge_l", "retain_rouge_l",
            utility_key(rows), "mia_min_k_auc"]
    head = "".join(tag("th", escape(k)) for k in [*keys, "source", "sha256"])
    body = "".join(tag("tr", "".join(tag("td", escape(plain(r.get(k))), class_="num") for k in keys)
                       + tag("td", escape(plain(r.get("source"))))
                       + tag("td", escape(str(r.get("model_before_sha256", ""))[:16]))) for r in rows)
    return tag("div", tag("table", tag("tr", head) + body), class_="scroll")


def settings_html(results: dict[str, Any]) -> str:
    """One table, a column per method: the settings each ran with (values no method set left out), then the
    unlearning settings all methods share."""
    methods = results.get("method_settings") or {}
    flat = {name: {**{k: v for k, v in settings.items() if not isinstance(v, dict) and k != "surgery_settings"},
                   **{f"{k}.{kk}": vv for k, v in settings.items() if isinstance(v, dict) and k != "surgery_settings"
                      for kk, vv in v.items()}}
            for name, settings in methods.items()}
    keys = list(dict.fromkeys(k for values in flat.values() for k in values))
    keys = [k for k in keys if any(values.get(k) is not None for values in flat.values())]
    head = tag("tr", tag("th", "setting") + "".join(tag("th", escape(name)) for name in flat))
    body = "".join(tag("tr", tag("th", escape(k), scope="row") + "".join(
        tag("td", escape(plain(values.get(k)))) for values in flat.values())) for k in keys)
    shared = next((v["surgery_settings"] for v in methods.values() if isinstance(v.get("surgery_settings"), dict)),
                  None)
    return (tag("div", tag("table", head + body), class_="scroll")
            + (kv_table(list(shared.items()), "Unlearning settings (every method)") if shared else ""))


def render(results: dict[str, Any], out: Path) -> str:
    """The page as a string; `out` is the run folder holding seed<s>/examples/."""
    out = Path(out)
    config = results.get("config") or {}
    rows = results.get("rows", [])
    seeds = sorted({r["seed"] for r in rows})
    first = rows[0] if rows else {}
    data = config.get("data") or {}
    title = f"prunelora report: causal LM, {data.get('dataset', '?')}, {first.get('request', 'no request')}"
    intro = (f"Forget {plain(first.get('forget_n'))} examples, retain {plain(first.get('retain_n'))}, holdout "
             f"{plain(first.get('holdout_n'))}; seeds {', '.join(map(str, seeds)) or '-'}; command "
             f"{results.get('command', '-')}. Files: seed<s>/models/<model>/<method>/ (model/, adapter/, record.json), "
             "seed<s>/examples/<model>/<method>.jsonl (every per-example measure), results.json, results.md.")
    parts = [tag("h1", escape(title)), para(intro), warnings_html(results)]
    if rows:
        parts.append(section("Answer", *[para(line) for line in closest(results)]))
        parts.append(section("Results", para("Mean ± standard deviation over seeds; the verdicts count seeds.",
                                             "note"), table_html(results)))
        parts.append(section("Verdicts per seed", verdicts_html(results)))
        figures = []
        if any(finite(r.get("forget_quality")) and finite(r.get(utility_key(rows))) for r in rows):
            figures.append(figure_html(tradeoff_figure(results), "forget quality against model utility",
                                       "Each method (mean over seeds): model utility (x) against TOFU's forget "
                                       "quality (y, log; the dashed line is p = 0.05). Top right is best; Retrain "
                                       "lies at 1."))
        hist = truth_ratio_figure(results, out, seeds[0])
        if hist is not None:
            figures.append(figure_html(hist, "truth ratios of the forget set",
                                       f"Seed {seeds[0]}: the forget set's truth ratios of each method (orange) "
                                       "beside Retrain's (blue), the two samples forget quality's KS test compares."))
        if figures:
            parts.append(section("Figures", *figures))
    else:
        parts.append(para("No result rows.", "note"))
    originals = originals_html(results)
    if originals:
        parts.append(section("Originals (before unlearning)", originals))
    if results.get("method_settings"):
        parts.append(section("Method settings", para("As each method ran.", "note"), settings_html(results)))
    parts.append(section("Run", tag("div", kv_table(sorted((results.get("machine") or {}).items()), "Machine")
                                     + kv_table(sorted((results.get("thresholds") or {}).items()),
                                                "Verdict thresholds"), class_="side"),
                         tag("details", tag("summary", "Full configuration (JSON)")
                             + tag("pre", escape(json.dumps(config, indent=2, default=str))))))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>{''.join(parts)}</body></html>\n")


def write(results: dict[str, Any], out: Path) -> Path:
    """out/report.html, written atomically."""
    path = Path(out) / "report.html"
    storage.write_text(path, render(results, out))
    return path


def main(argv: list[str] | None = None) -> int:
    return rewrite_main(argv, "prunelora.report.causal_lm_page", "causal-lm", write)


if __name__ == "__main__":
    raise SystemExit(main())
