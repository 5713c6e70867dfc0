"""report.html: one self-contained page (no network, images inlined as PNG data: URIs) of a run.

It shows the run's configuration and environment (machine load included), the paper's Figure 1
table with the best value per column marked (for UA, MIA-Efficacy, RA, TA: the one closest to
Retrain) and MIA values whose attacker was not clearly above chance marked inconclusive, the Figure 2 loss
histograms, a bar chart per metric, avg_gap against cost_vs_retrain, the evidence beyond the outputs (verdict,
ToW, probe, relearn time, the challenge's attack, U-LiRA) and every membership attack beside its attacker's accuracy. Plots are drawn on
matplotlib `Figure` objects (Agg, no pyplot state); every piece of text goes through html.escape.

    python -m prunelora.report.html OUT_DIR      # (re)writes OUT_DIR/report.html from results.json
"""
from __future__ import annotations

import base64
import io as stdio
import json
import math
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .. import storage
from ..metrics.attacks import attacks_in
from .plots import figure2_rows, histogram_file, loss_histogram_figure, new_figure
from .tables import (
    ACCURACY_METRICS,
    EVIDENCE,
    INCONCLUSIVE,
    budgets_of,
    display_rows,
    evidence_caption,
    evidence_cell,
    fmt,
    gap_note,
    inconclusive,
    inconclusive_note,
    longest,
    memory_note,
    method_label,
    method_rank,
    published_rows,
    request_heading,
    requests_of_rows,
    run_warnings,
    settings_rows,
)

# How a column's best is judged: closest to Retrain's value (the exact-unlearning reference), or lowest.
CLOSEST, LOWER = "closest to retrain", "lower"
# The paper's four accuracy metrics (percent): neither higher nor lower is better, closer to Retrain is.
METRICS = ACCURACY_METRICS
ACCURACY_KEYS = {key for key, _ in METRICS}
# Columns measured against Retrain: Retrain is the reference there, never a candidate for "best".
REFERENCE_KEYS = ACCURACY_KEYS | {"avg_gap", "cost_vs_retrain"}
COST_COLUMNS = [("sec_per_epoch", "RTE (s/epoch)", LOWER), ("total_sec", "Total (s)", LOWER),
                ("peak_memory_mb", "Peak mem (MB)", LOWER), ("trainable_params", "Trainable params", None)]
BAR_METRICS = [("ua", "UA (%)"), ("mia_efficacy", "MIA-Efficacy (%)"), ("ra", "RA (%)"), ("ta", "TA (%)"),
               ("sec_per_epoch", "RTE (s/epoch)"), ("peak_memory_mb", "Peak memory (MB)")]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5rem auto;
max-width:1400px;padding:0 1rem;color:#1d232a;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.2rem .4rem}th{background:#f3f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .sd{display:block;font-size:.72rem;color:#667}.scroll{overflow-x:auto}
td.best{background:#dff3e4}td.best strong{color:#0a5d22}td.inconclusive{color:#8a6d00}
.warning{background:#fff4d6;border:1px solid #e0b84c;padding:.4rem .6rem;margin:.5rem 0;max-width:1100px}
tr.model th{background:#e8eef6;text-align:left;font-size:.95rem}th[scope=row]{text-align:left;white-space:nowrap}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.8rem;padding-top:.3rem;max-width:1100px}
figure{margin:1rem 0}figcaption{color:#444;font-size:.9rem;max-width:1100px}
img{max-width:100%;height:auto;border:1px solid #eee}
.kv td:first-child{font-weight:600;white-space:nowrap}.side{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem}.note{color:#555}
"""


# -- small shared helpers ---------------------------------------------------------------------------
def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_label, _method_rank = method_label, method_rank


def _models(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _methods(rows: list[dict]) -> list[str]:
    return sorted(dict.fromkeys(r["method"] for r in rows), key=_method_rank)


_longest = longest


def _at_budget(rows: list[dict], model: str, method: str, budget: int | None) -> dict | None:
    """The row shown in a budget column: the method's row at that budget, else its budget-less row."""
    mine = {r["epochs"]: r for r in rows if r["model"] == model and r["method"] == method}
    return mine.get(budget, mine.get(None))


def _digits(key: str, values: Iterable[Any]) -> int:
    """Decimals a column is shown (and compared) with."""
    if key in ACCURACY_KEYS or key in ("avg_gap", "cost_vs_retrain") or key.startswith("mia_"):
        return 2
    if key == "peak_memory_mb":
        return 0
    top = max((abs(v) for v in values if _finite(v)), default=0.0)
    return 3 if top < 1 else 2 if top < 10 else 1


def _cell_text(row: dict | None, key: str, digits: int) -> str:
    if row is None:
        return "-"
    value, std = row.get(key), row.get(f"{key}_std")
    if key == "trainable_params" and _finite(value):
        text = f"{int(round(value)):,}"
        return text + (f" ± {std:,.0f}" if _finite(std) and std else "")
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return fmt(value, digits, std if _finite(std) else None)


def _cell_html(row: dict | None, key: str, digits: int) -> str:
    """The cell's text, escaped, with a "± std" part on its own smaller line (keeps wide tables narrow);
    an MIA value whose attacker was not clearly above chance reads "inconclusive", its value below it."""
    mean, sep, std = _cell_text(row, key, digits).partition(" ± ")
    text = escape(mean) + (f'<span class="sd"> ± {escape(std)}</span>' if sep else "")
    if inconclusive(row, key) and mean != "-":
        return f'{INCONCLUSIVE}<span class="sd">({text})</span>'
    return text


def _inconclusive_title(row: dict) -> str:
    n = row.get("mia_holdout_n")
    on = f" on {int(n)} held-out samples per draw" if _finite(n) else " on held-out samples"
    return f"inconclusive: the 95 % interval of the attacker's accuracy{on} includes chance (50 %)"


def _td(row: dict | None, key: str, digits: int, best: bool = False, **attrs: Any) -> str:
    """A numeric cell: bold and shaded when best, marked inconclusive (with a title) when its MIA attacker is."""
    text, classes = _cell_html(row, key, digits), ["num"]
    if best:
        text, classes = f"<strong>{text}</strong>", classes + ["best"]
    if inconclusive(row, key) and _finite(row.get(key)):
        classes.append("inconclusive")
        attrs["title"] = _inconclusive_title(row)
    elif key == "avg_gap" and row and isinstance(row.get("avg_gap_metrics"), list):
        attrs["title"] = "mean |difference from Retrain| over " + ", ".join(row["avg_gap_metrics"])
    return _tag("td", text, class_=" ".join(classes), **attrs)


def _tag(name: str, text: str = "", **attrs: Any) -> str:
    """<name attrs>text</name>; text is inserted as given (escape it first), attribute values are escaped."""
    shown = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"' for k, v in attrs.items() if v is not None)
    return f"<{name}{shown}>{text}</{name}>"


def _kv_table(pairs: list[tuple[str, Any]], caption: str | None = None) -> str:
    body = "".join(_tag("tr", _tag("td", escape(k)) + _tag("td", escape(_plain(v)))) for k, v in pairs)
    return _tag("table", (_tag("caption", escape(caption)) if caption else "") + body, class_="kv")


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_plain(v)}" for k, v in value.items()) if value else "-"
    return "-" if value is None else str(value)


# -- figures ----------------------------------------------------------------------------------------
def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_data_uri(fig, dpi: int = 100) -> str:
    """Render a matplotlib figure to a `data:image/png;base64,...` URI."""
    buffer = stdio.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def _figure(uri: str, alt: str, caption: str) -> str:
    """<figure> with the inlined image and the one sentence saying what it shows."""
    return _tag("figure", f'<img src="{uri}" alt="{escape(alt)}">' + _tag("figcaption", escape(caption)))


def figure_html(fig, alt: str, caption: str) -> str:
    return _figure(figure_data_uri(fig), alt, caption)


def _method_colors(methods: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {m: palette(_method_rank(m) % 10) for m in methods}


def metric_bars_figure(rows: list[dict], model: str):
    """UA, MIA-Efficacy, RA, TA, RTE and peak memory across methods, each at its longest budget."""
    methods = _methods([r for r in rows if r["model"] == model])
    chosen = [_longest(rows, model, m) for m in methods]
    colors = _method_colors(methods)
    fig = new_figure(12, 5.6)
    axes = fig.subplots(2, 3).ravel()
    x = np.arange(len(methods))
    labels = [_label(m) + (f" ({r['epochs']} ep)" if r["epochs"] else "") for m, r in zip(methods, chosen)]
    for ax, (key, title) in zip(axes, BAR_METRICS):
        values = [r.get(key) if _finite(r.get(key)) else 0.0 for r in chosen]
        stds = [r.get(f"{key}_std") for r in chosen]
        err = [s if _finite(s) else 0.0 for s in stds] if any(_finite(s) for s in stds) else None
        ax.bar(x, values, yerr=err, capsize=3 if err else 0, color=[colors[m] for m in methods])
        if key == "peak_memory_mb":
            kind = {r.get("memory_kind") for r in chosen} - {None}
            title += f"\n[{', '.join(sorted(kind))}]" if kind else ""
        ax.set_title(title, fontsize=9)
        ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right", rotation_mode="anchor")
        ax.tick_params(axis="y", labelsize=7)
        if key in ACCURACY_KEYS:
            ax.set_ylim(0, 105)
    fig.suptitle(f"{model}: metrics per method (longest budget" + (", mean ± std over seeds)" if any(
        f"{k}_std" in r for r in chosen for k, _ in BAR_METRICS) else ")"), fontsize=10)
    return fig


def gap_cost_figure(rows: list[dict]):
    """avg_gap (y) against cost_vs_retrain (x), one point per method row, one panel per model."""
    models = [m for m in _models(rows)
              if any(_finite(r.get("avg_gap")) and _finite(r.get("cost_vs_retrain")) for r in rows if r["model"] == m)]
    colors = _method_colors(_methods(rows))
    fig = new_figure(5.2 * len(models), 4.0)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        points = [r for r in rows if r["model"] == model
                  and _finite(r.get("avg_gap")) and _finite(r.get("cost_vs_retrain"))]
        seen = set()
        for r in sorted(points, key=lambda r: (_method_rank(r["method"]), r["epochs"] or 0)):
            label = _label(r["method"]) if r["method"] not in seen else None
            seen.add(r["method"])
            ax.errorbar(r["cost_vs_retrain"], r["avg_gap"], xerr=_err(r, "cost_vs_retrain"),
                        yerr=_err(r, "avg_gap"), fmt="o", color=colors[r["method"]], label=label, capsize=2,
                        ecolor=(*colors[r["method"]][:3], 0.35), elinewidth=0.8)
            if r["epochs"]:
                ax.annotate(f"{r['epochs']} ep", (r["cost_vs_retrain"], r["avg_gap"]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
        costs = [r["cost_vs_retrain"] for r in points if r["cost_vs_retrain"] > 0]
        if costs and max(costs) / min(costs) > 30:
            ax.set_xscale("log")
        ax.set_xlabel("cost vs Retrain (total time ratio)", fontsize=8)
        ax.set_ylabel("avg gap to Retrain (points)", fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    return fig


def _err(row: dict, key: str) -> float | None:
    std = row.get(f"{key}_std")
    return std if _finite(std) else None


# -- the Figure 1 table -----------------------------------------------------------------------------
def best_cells(rows: list[dict], key: str, direction: str, digits: int) -> set[str]:
    """Methods holding the best value of a column (compared at the shown precision).

    UA, MIA-Efficacy, RA, TA (CLOSEST): closest to the Retrain row among `rows`, since exact unlearning,
    not the highest accuracy, is the goal; without a Retrain row nothing is marked. Others (LOWER): lowest.
    Original never competes; Retrain does not compete on columns measured against it; an MIA value whose
    attacker was not above chance never competes. A column where every candidate ties (or fewer than two
    compete) marks nothing.
    """
    scores = _scores(rows, key, digits) if direction == CLOSEST else _candidates(rows, key, digits)
    if len(scores) < 2 or len(set(scores.values())) == 1:
        return set()
    best = min(scores.values())
    return {m for m, v in scores.items() if v == best}


def _candidates(rows: list[dict], key: str, digits: int) -> dict[str, float]:
    """The competing methods' values of a column, rounded as shown."""
    values = {}
    for r in rows:
        if r["method"] == "original" or (r["method"] == "retrain" and key in REFERENCE_KEYS):
            continue
        if _finite(r.get(key)) and not inconclusive(r, key):
            values[r["method"]] = round(float(r[key]), digits)
    return values


def _scores(rows: list[dict], key: str, digits: int) -> dict[str, float]:
    """|value - Retrain's value| per competing method, at the shown precision; empty without a usable reference."""
    ref = next((r for r in rows if r["method"] == "retrain"), None)
    if ref is None or not _finite(ref.get(key)) or inconclusive(ref, key):
        return {}
    target = round(float(ref[key]), digits)
    return {m: round(abs(v - target), digits) for m, v in _candidates(rows, key, digits).items()}


def results_table(rows: list[dict]) -> str:
    budgets = budgets_of(rows) or [None]
    has_gap = any(_finite(r.get("avg_gap")) for r in rows)
    has_cost = any(_finite(r.get("cost_vs_retrain")) for r in rows)
    groups = [(key, label, CLOSEST) for key, label in METRICS] + ([("avg_gap", "Avg gap", LOWER)] if has_gap else [])
    singles = COST_COLUMNS + ([("cost_vs_retrain", "Cost vs Retrain", LOWER)] if has_cost else [])
    ep = [f"{b} ep" if b is not None else "" for b in budgets]
    head1 = _tag("th", "Method", rowspan=2) + "".join(
        _tag("th", escape(label), colspan=len(budgets)) for _, label, _ in groups) + "".join(
        _tag("th", escape(label), rowspan=2) for _, label, _ in singles)
    head2 = "".join(_tag("th", escape(e)) for _ in groups for e in ep)
    width = 1 + len(groups) * len(budgets) + len(singles)
    bodies = []
    for model in _models(rows):
        mine = [r for r in rows if r["model"] == model]
        methods = _methods(mine)
        desc = next((r.get("model_desc") for r in mine if r.get("model_desc")), model)
        # (column id, row per method, key, digits, direction)
        columns = []
        for key, _, direction in groups:
            for b in budgets:
                chosen = {m: _at_budget(mine, model, m, b) for m in methods}
                columns.append((f"{key}@{b}" if b is not None else key, chosen, key, direction))
        for key, _, direction in singles:
            columns.append((key, {m: _longest(mine, model, m) for m in methods}, key, direction))
        lines = [_tag("tr", _tag("th", escape(str(desc)), colspan=width), class_="model")]
        marks = {}
        for col, chosen, key, direction in columns:
            digits = _digits(key, [r.get(key) for r in chosen.values() if r])
            present = [r for r in chosen.values() if r]
            marks[col] = (digits, best_cells(present, key, direction, digits) if direction else set())
        for method in methods:
            cells = [_tag("th", escape(_label(method)), scope="row")]
            for col, chosen, key, _ in columns:
                digits, best = marks[col]
                cells.append(_td(chosen[method], key, digits, method in best, data_col=col))
            lines.append(_tag("tr", "".join(cells), data_model=model, data_method=method))
        bodies.append(_tag("tbody", "".join(lines)))
    caption = _results_caption(rows, has_gap, has_cost)
    return _tag("table", _tag("caption", escape(caption)) + _tag("thead", _tag("tr", head1) + _tag("tr", head2))
                + "".join(bodies), class_="results")


def _results_caption(rows: list[dict], has_gap: bool, has_cost: bool) -> str:
    """What the results table shows and how its best cells were chosen (the rule differs per column)."""
    aggregated = any(r.get("seed", 0) is None for r in rows)
    return ("Rows: methods per model; UA, MIA-Efficacy, RA and TA in percent at each unlearning budget "
            "(Original and Retrain run their own recipe and are repeated in every budget column). "
            "RTE, total time, peak memory" + (" and cost vs Retrain" if has_cost else "") +
            " are those of the longest budget. "
            + ("Cells show mean ± sample std over seeds. " if aggregated else "")
            + "Best per column (bold, shaded): for UA, MIA-Efficacy, RA and TA the value closest to Retrain's "
            "(absolute difference; Retrain is exact unlearning, so a value above it is no better than one "
            "below it); lowest RTE, total time, peak memory" + (", avg gap" if has_gap else "")
            + (", cost vs Retrain" if has_cost else "") + "; compared at the shown precision, all tied values "
            "marked, nothing marked when every candidate ties, fewer than two compete, or (UA, MIA-Efficacy, "
            "RA, TA) no Retrain row ran. Original never competes; Retrain is the reference and does not "
            "compete on the accuracy columns" + (" or on avg gap / cost vs Retrain" if has_gap or has_cost else "")
            + "." + (" An inconclusive MIA-Efficacy never competes, nor does any in a column whose Retrain "
                     "value is inconclusive." if any(inconclusive(r, "mia_efficacy") for r in rows) else "")
            + (f" {gap_note(rows).replace('Gap', 'Avg gap', 1)}" if has_gap else "")
            + f" Peak memory: {memory_note(rows)}.")


def table_notes(rows: list[dict]) -> str:
    """What "inconclusive" means, as a visible paragraph under the table (empty when no value is)."""
    note = inconclusive_note(rows)
    return _para(note, "note inconclusive-note") if note else ""


def attack_table(rows: list[dict]) -> str:
    attacks = attacks_in(rows)
    head1 = _tag("th", "Model", rowspan=2) + _tag("th", "Method", rowspan=2) + _tag("th", "Epochs", rowspan=2) + "".join(
        _tag("th", escape(a.label), colspan=2) for a in attacks)
    head2 = "".join(_tag("th", "efficacy %") + _tag("th", "attacker acc %") for _ in attacks)
    body = []
    ordered = sorted(rows, key=lambda r: (_models(rows).index(r["model"]), _method_rank(r["method"]), r["epochs"] or 0))
    for r in ordered:
        cells = [_tag("td", escape(str(r["model"]))), _tag("th", escape(_label(r["method"])), scope="row"),
                 _tag("td", escape("-" if r["epochs"] is None else str(r["epochs"])), class_="num")]
        for a in attacks:
            cells.append(_td(r, a.efficacy, 2))
            cells.append(_tag("td", _cell_html(r, a.acc, 2), class_="num"))
        body.append(_tag("tr", "".join(cells)))
    caption = ("Each attack's MIA-Efficacy (% of forget-train samples it calls non-members) beside the attacker's "
               "own accuracy at telling retain-train from test-retain on held-out shadow samples, mean over its "
               "shadow draws: an efficacy from an attacker near 50% accuracy says little about what the model "
               "remembers" + ("; inconclusive marks an efficacy whose attacker's accuracy interval includes chance, "
                              "which is no evidence either way." if any(inconclusive(r, a.efficacy) for r in rows
                                                                         for a in attacks) else "."))
    return _tag("table", _tag("caption", escape(caption)) + _tag("thead", _tag("tr", head1) + _tag("tr", head2))
                + _tag("tbody", "".join(body)), class_="attacks")


def evidence_html(rows: list[dict]) -> str:
    """The evidence table (tables.EVIDENCE columns, each method at its longest budget), or "" without evidence."""
    columns = [(k, label) for k, label in EVIDENCE if any(r.get(k) is not None for r in rows)]
    if not any(k != "tow" for k, _ in columns):
        return ""
    head = _tag("tr", "".join(_tag("th", escape(h)) for h in ["Model", "Method", "Epochs", *(label for _, label in columns)]))
    body = []
    for model in _models(rows):
        for method in _methods([r for r in rows if r["model"] == model]):
            r = longest(rows, model, method)
            cells = [_tag("td", escape(model)), _tag("th", escape(_label(method)), scope="row"),
                     _tag("td", escape(fmt(r["epochs"])), class_="num")]
            for key, _ in columns:
                title = r.get("verdict_reasons") or None if key == "verdict" else None
                cells.append(_tag("td", escape(evidence_cell(r, key)), class_="num" if key != "verdict" else None,
                                  title=title))
            body.append(_tag("tr", "".join(cells)))
    return _tag("table", _tag("caption", escape(evidence_caption(rows))) + _tag("thead", head)
                + _tag("tbody", "".join(body)), class_="evidence")


# -- the page ---------------------------------------------------------------------------------------
def config_pairs(config: dict, data_sizes: dict | None = None) -> list[tuple[str, Any]]:
    """The main configuration fields; the splits' real sizes (when the run recorded them) beside the caps asked for."""
    data, pre, un = config.get("data", {}), config.get("pretrain", {}), config.get("unlearn", {})
    args = config.get("model_args", {})
    models = [f"{m} ({_plain(args[m])})" if args.get(m) else m for m in config.get("models", [])]
    pairs = [("preset", config.get("preset")), ("dataset", data.get("dataset")),
             ("forget request", forget_description(data, {})),
             *_size_pairs(data, data_sizes),
             ("models", models), ("methods", config.get("methods")), ("seeds", config.get("seeds")),
             ("pretrain epochs", pre.get("epochs")), ("unlearn epochs (budgets)", un.get("epochs")),
             ("unlearn optimizer / lr", f"{_plain(un.get('optimizer'))} / {_plain(un.get('lr'))}"),
             ("unlearn batch size", un.get("batch_size")),
             ("prune amount / mode", f"{_plain(un.get('prune_amount'))} / {_plain(un.get('prune_mode'))}"),
             ("keep sparsity", un.get("keep_sparsity")),
             ("LoRA r / alpha / dropout",
              " / ".join(_plain(un.get(k)) if un.get(k) is not None else "default"
                         for k in ("lora_r", "lora_alpha", "lora_dropout"))),
             ("device / precision", f"{_plain(config.get('device'))} / {_plain(config.get('precision'))}"),
             ("MIA shadow cap per side", config.get("mia_max_per_side")),
             ("method settings", _plain(config.get("method_args")) if config.get("method_args") else None)]
    return [(k, v) for k, v in pairs if v is not None]


def _size_pairs(data: dict, sizes: dict | None) -> list[tuple[str, Any]]:
    """Real split sizes first (the caps are upper bounds: a small dataset has fewer), then the caps."""
    caps = " / ".join("all" if data.get(k) is None else _plain(data.get(k))
                      for k in ("train_per_class", "test_per_class"))
    pairs = [("caps per class, train / test", caps)]
    if sizes:
        real = " / ".join(_plain(sizes.get(k)) for k in ("forget_train", "retain_train", "test_retain", "test_forget"))
        pairs.insert(0, ("samples: forget-train / retain-train / test-retain / test-forget", real))
    return pairs


def wall_time_text(results: dict) -> str | None:
    """Wall seconds, saying how much of them earlier invocations spent on stages this one reused."""
    if not _finite(results.get("wall_sec")):
        return None
    text = f"{results['wall_sec']:.1f}"
    reused = results.get("reused") or {}
    if _finite(reused.get("stages")) and reused["stages"] > 0:
        parts = [f"{reused['sec']:.1f} s reused" if _finite(reused.get("sec")) else "partly reused",
                 f"from {int(reused['stages'])} finished stage{'s' if reused['stages'] != 1 else ''}"]
        own = results.get("elapsed_sec")
        text += f" ({' '.join(parts)}" + (f"; this invocation {own:.1f} s)" if _finite(own) else ")")
    return text


def load_pairs(load: dict | None) -> list[tuple[str, Any]]:
    """The machine's load while the run was timed: how far its timings can be compared with others."""
    if not load:
        return []
    avg = [(f"load average at {when} (1 / 5 / 15 min)",
            " / ".join(f"{v:.2f}" for v in load[key] if _finite(v)) if isinstance(load.get(key), list) else None)
           for when, key in (("start", "loadavg_start"), ("end", "loadavg_end"))]
    share = load.get("others_cpu_share")
    pairs = [("machine cores / threads used", f"{_plain(load.get('cores'))} / {_plain(load.get('threads'))}"), *avg,
             ("CPU share of other processes", f"{100 * share:.0f} %" if _finite(share) else None),
             ("machine busy", None if load.get("busy") is None
              else "yes: timings not comparable" if load["busy"] else "no")]
    return [(k, v) for k, v in pairs if v is not None]


def warnings_html(results: dict) -> str:
    """The run's warnings (busy machine, mismatched checkpoint) as a box a reader cannot miss."""
    found = run_warnings(results)
    return _tag("div", "".join(_para("Warning: " + w) for w in found), class_="warning") if found else ""


def _section(title: str, *parts: str) -> str:
    return _tag("section", _tag("h2", escape(title)) + "".join(parts))


def _para(text: str, cls: str | None = None) -> str:
    return _tag("p", escape(text), class_=cls)


def forget_description(data: dict, results: dict) -> str:
    """What was forgotten: a class, a random share, or a sequence of requests."""
    scenario = data.get("scenario", "class")
    if scenario == "random":
        return f"random {100 * (data.get('forget_ratio') or 0.1):g} % of the training set"
    if scenario == "sequential":
        return "sequential requests: " + "; ".join(results.get("requests") or map(str, data.get("requests") or []))
    return f"forget class {data.get('forget_class', '?')}"


def render_html(results: dict, out: Path) -> str:
    """The page as a string; `out` is the run folder the rows' logits_file paths are relative to."""
    out = Path(out)
    all_rows = list(results.get("rows", []))
    every_request = display_rows(all_rows)
    requests = requests_of_rows(every_request)
    last = requests[-1]  # figures and attacks show the latest request; the table shows each
    rows = [r for r in every_request if r.get("request") == last]
    all_rows = [r for r in all_rows if r.get("request") == last]
    config, env = results.get("config", {}) or {}, results.get("environment", {}) or {}
    models = _models(rows)
    data = config.get("data") or {}
    dataset = data.get("dataset", "?")
    title = f"prunelora report: {dataset}, {forget_description(data, results)}"
    n_seeds = max((r.get("n_seeds", 1) for r in rows if _finite(r.get("n_seeds"))), default=1)

    env_pairs = list(env.items()) + [("seeds", config.get("seeds"))] + load_pairs(results.get("machine_load"))
    wall = wall_time_text(results)
    if wall:
        env_pairs.append(("wall time (s)", wall))
    run = _section("Run",
                   _tag("div", _kv_table(config_pairs(config, results.get("data_sizes")), "Configuration (main fields)")
                        + _kv_table(env_pairs, "Environment"), class_="side"),
                   _tag("details", _tag("summary", "Full configuration (JSON)")
                        + _tag("pre", escape(json.dumps(config, indent=2, default=str)))))

    parts = [_para("The paper's Figure 1: unlearning metrics and cost of every method"
                   + (f" (aggregated over {n_seeds} seeds)." if n_seeds > 1 else "."))]
    parts.append(warnings_html(results))
    for request in requests:
        mine = [r for r in every_request if r.get("request") == request]
        heading = request_heading(every_request, request)
        if heading:
            parts.append(_tag("h3", escape(heading)))
        parts.append(_tag("div", results_table(mine), class_="scroll") + table_notes(mine) if mine
                     else _para("No result rows.", "note"))
    table = _section("Results (Figure 1)", *parts)

    # Figure 2 needs per-sample logits: those of one seed (aggregated rows have none).
    seed, with_logits = figure2_rows(all_rows)
    hist_parts = []
    if not with_logits:
        hist_parts.append(_para("No per-sample logits were saved with these rows, so no loss histograms.", "note"))
    for model in models:
        mine = [r for r in with_logits if r["model"] == model]
        if mine:
            drawn = histogram_file(out, model)  # plots/ holds it when write_results drew it just before
            img = (png_data_uri(drawn.read_bytes()) if drawn.is_file()
                   else figure_data_uri(loss_histogram_figure(mine, model, out)))
            hist_parts.append(_figure(
                img, f"loss histograms, {model}",
                f"{model}, seed {seed}: per-sample cross-entropy of the forget-train samples against the "
                "test samples of the retained classes, one panel per method at its longest budget; forgetting "
                "shows as forget losses lying above (to the right of) test losses."))
    hists = _section("Loss histograms (Figure 2)", *hist_parts)

    bars = _section("Metrics per method", *[figure_html(
        metric_bars_figure(rows, model), f"metric bars, {model}",
        f"{model}: UA, MIA-Efficacy, RA, TA, run time per epoch and peak memory of each method at its longest "
        "budget" + (", with error bars of one standard deviation over seeds." if n_seeds > 1 else "."))
        for model in models])

    if any(_finite(r.get("avg_gap")) and _finite(r.get("cost_vs_retrain")) for r in rows):
        trade = figure_html(gap_cost_figure(rows), "avg gap against cost vs retrain",
                            "Each method row (one point per budget) placed by its total time relative to Retrain "
                            "(x) and its avg gap to Retrain as in the table (y): "
                            "the lower left is closest to exact unlearning for the least time.")
    else:
        trade = _para("These rows carry no avg_gap / cost_vs_retrain (the gap to Retrain was not computed, "
                      "or no Retrain row ran), so the gap-against-cost plot is left out.", "note")
    tradeoff = _section("Gap to Retrain against cost", trade)

    attacks = _section("Membership attacks", _tag("div", attack_table(rows), class_="scroll")) if attacks_in(rows) else ""
    compared = published_rows(results)
    published = _section("Beside the published figures", _para(escape(compared[0]) + ".", "note"), _tag(
        "div", _tag("table", _tag("tr", "".join(_tag("th", escape(h)) for h in compared[1])) + "".join(
            _tag("tr", "".join(_tag("td", escape(c)) for c in row)) for row in compared[2])), class_="scroll"),
        _para("Where this run differs from the published setting: " + escape("; ".join(compared[3]) or "nowhere")
              + ".", "note")) if compared else ""
    head, settings = settings_rows(results)
    methods_run = _section("Method settings", _para(
        "Each method's settings as it ran (resolved from its defaults, the preset and the run's overrides).", "note"),
        _tag("div", _tag("table", _tag("tr", "".join(_tag("th", escape(h)) for h in head)) + "".join(
            _tag("tr", "".join(_tag("td", escape(c)) for c in row)) for row in settings)), class_="scroll")
    ) if settings else ""
    evidence = evidence_html(rows)
    evidence = _section("Evidence beyond the outputs", _tag("div", evidence, class_="scroll")) if evidence else ""

    body = (_tag("h1", escape(title))
            + _para(f"Models: {', '.join(models) or '-'}; methods: "
                    f"{', '.join(_label(m) for m in _methods(rows)) or '-'}; preset {config.get('preset', '-')}."
                    " UA, MIA-Efficacy, RA, TA are percentages; the best unlearning is the one closest to "
                    "Retrain (exact unlearning), not the highest.", "note")
            + run + table + published + evidence + hists + bars + tradeoff + attacks + methods_run)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n")


def write_html_report(results: dict, out: Path) -> Path:
    """Write out/report.html atomically and return its path."""
    out = Path(out)
    path = out / "report.html"
    page = render_html(results, out)
    with storage.atomic_path(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m prunelora.report.html OUT_DIR   (the folder holding results.json)", file=sys.stderr)
        return 2
    out = Path(args[0])
    print(write_html_report(json.loads((out / "results.json").read_text()), out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
