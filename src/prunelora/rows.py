"""The results row: one model x method x budget x seed, its contract keys first (results.json, results.csv)."""
from __future__ import annotations

from typing import Any

from .metrics.registry import evaluated_prefixes
from .metrics.spec import FIGURE1, specs

# The per-request accuracies a sequence of requests adds (forget_acc_r1, forget_acc_r2, ...).
REQUEST_ACCURACY_PREFIX = "forget_acc_r"


def measured_prefixes() -> tuple[str, ...]:
    """Prefixes of the keys evaluation writes (evidence registered later included): dropped from a re-evaluated
    row before the new metrics go in."""
    return (*evaluated_prefixes(), REQUEST_ACCURACY_PREFIX)


def contract_metrics() -> list[str]:
    """The measured metrics of the paper's Figure 1, in its order: UA, MIA-Efficacy, RA, TA."""
    return [s.key for s in specs(FIGURE1, in_gap=True)]


def make_row(model: str, method: str, epochs: int | None, metrics: dict, *, sec_per_epoch: float | None,
             total_sec: float, peak_memory_mb: float | None, trainable_params: int, **extra: Any) -> dict:
    """One results.json row: the contract's keys first, then extras."""
    row = {"model": model, "method": method, "epochs": epochs, **{k: metrics[k] for k in contract_metrics()},
           "sec_per_epoch": sec_per_epoch, "total_sec": total_sec, "peak_memory_mb": peak_memory_mb,
           "trainable_params": trainable_params}
    row.update({k: v for k, v in metrics.items() if k not in row})
    row.update(extra)
    return row
