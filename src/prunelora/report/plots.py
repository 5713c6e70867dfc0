"""Figure 2 of the paper: per-sample cross-entropy histograms, forget set vs test set, per method.

Drawn once per model (loss_histogram_figure, on a matplotlib Figure without pyplot state) from the
rows figure2_rows picks, saved as plots/losses_<model>.png; report.html inlines that file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import storage
from ..metrics.outputs import per_sample_loss
from .tables import longest, method_label, method_rank, requests_of_rows


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure on the Agg canvas, independent of pyplot (no global state, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def load_losses(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(npz, allow_pickle=False) as data:
        forget = per_sample_loss(data["forget_train_logits"], data["forget_train_labels"])
        test = per_sample_loss(data["test_retain_logits"], data["test_retain_labels"])
    return forget, test


def loss_histogram_figure(rows: list[dict], model: str, out: Path):
    """Figure 2 for one model: per method (longest budget), forget-train vs test-retain cross entropy."""
    methods = sorted(dict.fromkeys(r["method"] for r in rows if r["model"] == model), key=method_rank)
    chosen = {m: longest(rows, model, m) for m in methods}
    # A row of alike panels: fixed margins in inches place them as the constrained layout did, without its
    # solver (two passes over every tick label per save: most of a report's drawing time with a dozen methods)
    width, height = 2.9 * len(chosen), 2.7
    fig = new_figure(width, height, layout=None)
    panel = (width - 0.5 - 0.15 - 0.45 * (len(chosen) - 1)) / len(chosen)
    fig.subplots_adjust(left=0.5 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.62 / height,
                        wspace=0.45 / panel)
    axes, legend = fig.subplots(1, len(chosen), squeeze=False)[0], None
    for ax, (method, row) in zip(axes, chosen.items()):
        ax.set_title(method_label(method) + (f" ({row['epochs']} ep)" if row["epochs"] else ""), fontsize=9)
        ax.set_xlabel("cross-entropy", fontsize=8)
        ax.tick_params(labelsize=7)
        path = out / row["logits_file"]
        if not path.is_file():
            ax.text(0.5, 0.5, "logits file missing", ha="center", va="center", transform=ax.transAxes)
            continue
        forget, test = load_losses(path)
        both = np.concatenate([forget, test])
        top = max(float(np.percentile(both, 99)) if len(both) else 1.0, 1e-3)
        bins = np.linspace(0, top, 40)
        for losses, label in ((test, "test (retain classes)"), (forget, "forget (train)")):
            if len(losses):  # a dataset without a test split has no test losses: a density of nothing is NaN
                ax.hist(np.clip(losses, 0, top), bins=bins, alpha=0.6, density=True, histtype="stepfilled",
                        label=label)  # one polygon per histogram, not a patch per bin: 40x fewer artists
        if not legend and len(both):
            legend = ax.legend(fontsize=7)
    fig.suptitle(f"{model}: per-sample losses, forget vs test (forget must lie higher)", fontsize=10)
    return fig


def figure2_rows(rows: list[dict]) -> tuple[int | None, list[dict]]:
    """The rows Figure 2 shows: the latest request's, of the lowest seed, that carry per-sample logits
    (aggregated rows over seeds have none). Returns (that seed, the rows)."""
    last = requests_of_rows(rows)[-1]
    with_logits = [r for r in rows if r.get("logits_file") and r.get("seed", 0) is not None
                   and r.get("request") == last]
    seed = min((r.get("seed", 0) for r in with_logits), default=None)
    return seed, [r for r in with_logits if r.get("seed", 0) == seed]


def histogram_file(out: Path, model: str) -> Path:
    return Path(out) / "plots" / f"losses_{model}.png"


def loss_histograms(rows: list[dict], out: Path) -> list[Path]:
    """plots/losses_<model>.png for every model of figure2_rows; returns the files written."""
    _, rows = figure2_rows(rows)
    written = []
    for model in dict.fromkeys(r["model"] for r in rows):
        fig = loss_histogram_figure(rows, model, out)
        path = histogram_file(out, model)
        with storage.atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        written.append(path)
    return written
