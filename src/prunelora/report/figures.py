"""report.html's figures: the per-method metric bars and the gap against cost, drawn on matplotlib
`Figure` objects (Agg, no pyplot state) and inlined as PNG data: URIs."""
from __future__ import annotations

import base64
import io as stdio
from html import escape
from typing import Any

import numpy as np
from matplotlib import colormaps

from ..metrics.finite import finite
from ..metrics.spec import FIGURE1, specs
from .basics import longest, method_label, method_rank, methods_of, models_of
from .markup import tag
from .plots import new_figure


def bar_metrics() -> list[tuple[str, str]]:
    """The bar chart's panels: the metrics whose spec names a chart title (UA ... TA, RTE, peak memory)."""
    return [(s.key, s.chart) for s in specs() if s.chart]


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_data_uri(fig, dpi: int = 100) -> str:
    """Render a matplotlib figure to a `data:image/png;base64,...` URI."""
    buffer = stdio.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def figure_block(uri: str, alt: str, caption: str) -> str:
    """<figure> with the inlined image and the one sentence saying what it shows."""
    return tag("figure", f'<img src="{uri}" alt="{escape(alt)}">' + tag("figcaption", escape(caption)))


def figure_html(fig, alt: str, caption: str) -> str:
    return figure_block(figure_data_uri(fig), alt, caption)


def method_colors(methods: list[str]) -> dict[str, Any]:
    palette = colormaps["tab10"]
    return {m: palette(method_rank(m) % 10) for m in methods}


def metric_bars_figure(rows: list[dict], model: str):
    """UA, MIA-Efficacy, RA, TA, RTE and peak memory across methods, each at its longest budget."""
    methods = methods_of([r for r in rows if r["model"] == model])
    chosen = [longest(rows, model, m) for m in methods]
    colors = method_colors(methods)
    fig = new_figure(12, 5.6)
    axes = fig.subplots(2, 3).ravel()
    x = np.arange(len(methods))
    percent = {s.key for s in specs(FIGURE1) if s.unit == "%"}
    labels = [method_label(m) + (f" ({r['epochs']} ep)" if r["epochs"] else "") for m, r in zip(methods, chosen)]
    for ax, (key, title) in zip(axes, bar_metrics()):
        values = [r.get(key) if finite(r.get(key)) else 0.0 for r in chosen]
        stds = [r.get(f"{key}_std") for r in chosen]
        err = [s if finite(s) else 0.0 for s in stds] if any(finite(s) for s in stds) else None
        ax.bar(x, values, yerr=err, capsize=3 if err else 0, color=[colors[m] for m in methods])
        if key == "peak_memory_mb":
            kind = {r.get("memory_kind") for r in chosen} - {None}
            title += f"\n[{', '.join(sorted(kind))}]" if kind else ""
        ax.set_title(title, fontsize=9)
        ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right", rotation_mode="anchor")
        ax.tick_params(axis="y", labelsize=7)
        if key in percent:
            ax.set_ylim(0, 105)
    fig.suptitle(f"{model}: metrics per method (longest budget" + (", mean ± std over seeds)" if any(
        f"{k}_std" in r for r in chosen for k, _ in bar_metrics()) else ")"), fontsize=10)
    return fig


def gap_cost_figure(rows: list[dict]):
    """avg_gap (y) against cost_vs_retrain (x), one point per method row, one panel per model."""
    models = [m for m in models_of(rows)
              if any(finite(r.get("avg_gap")) and finite(r.get("cost_vs_retrain")) for r in rows if r["model"] == m)]
    colors = method_colors(methods_of(rows))
    fig = new_figure(5.2 * len(models), 4.0)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        points = [r for r in rows if r["model"] == model
                  and finite(r.get("avg_gap")) and finite(r.get("cost_vs_retrain"))]
        seen = set()
        for r in sorted(points, key=lambda r: (method_rank(r["method"]), r["epochs"] or 0)):
            label = method_label(r["method"]) if r["method"] not in seen else None
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
    return std if finite(std) else None
