"""Figure 2 of the paper: per-sample cross-entropy histograms, forget set vs test set, per method."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import io
from ..metrics.evaluate import per_sample_loss
from .tables import method_label


def load_losses(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(npz, allow_pickle=False) as data:
        forget = per_sample_loss(data["forget_train_logits"], data["forget_train_labels"])
        test = per_sample_loss(data["test_retain_logits"], data["test_retain_labels"])
    return forget, test


def loss_histograms(rows: list[dict], out: Path) -> list[Path]:
    """One PNG per model, one panel per method (its longest budget): where the forget losses lie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [r for r in rows if r.get("logits_file") and r.get("seed", 0) == rows[0].get("seed", 0)]
    for model in dict.fromkeys(r["model"] for r in rows):
        chosen: dict[str, dict] = {}
        for r in rows:
            if r["model"] == model and (r["method"] not in chosen or (r["epochs"] or 0) >= (chosen[r["method"]]["epochs"] or 0)):
                chosen[r["method"]] = r
        fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 2.8), squeeze=False)
        for ax, (method, r) in zip(axes[0], chosen.items()):
            forget, test = load_losses(out / r["logits_file"])
            top = float(np.percentile(np.concatenate([forget, test]), 99)) if len(forget) + len(test) else 1.0
            bins = np.linspace(0, max(top, 1e-3), 40)
            ax.hist(np.clip(test, 0, top), bins=bins, alpha=0.6, density=True, label="test (retain classes)")
            ax.hist(np.clip(forget, 0, top), bins=bins, alpha=0.6, density=True, label="forget")
            title = method_label(method) + (f" ({r['epochs']} ep)" if r["epochs"] else "")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("cross-entropy", fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{model}: losses of forget vs test samples (forget must be higher)", fontsize=10)
        fig.tight_layout()
        path = out / "plots" / f"losses_{model}.png"
        with io.atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(path)
    return written
