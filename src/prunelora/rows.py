"""The results row: one model x method x budget x seed, its contract keys first (results.json, results.csv)."""
from __future__ import annotations

from typing import Any

# Keys that evaluation writes: dropped from a re-evaluated row before the new metrics go in.
EVALUATED_PREFIXES = ("ua", "ra", "ta", "forget_test_acc", "mia_", "challenge_", "probe_", "relearn_", "forget_acc_r")


def make_row(model: str, method: str, epochs: int | None, metrics: dict, *, sec_per_epoch: float | None,
             total_sec: float, peak_memory_mb: float | None, trainable_params: int, **extra: Any) -> dict:
    """One results.json row: the contract's keys first, then extras."""
    row = {"model": model, "method": method, "epochs": epochs,
           "ua": metrics["ua"], "mia_efficacy": metrics["mia_efficacy"], "ra": metrics["ra"], "ta": metrics["ta"],
           "sec_per_epoch": sec_per_epoch, "total_sec": total_sec, "peak_memory_mb": peak_memory_mb,
           "trainable_params": trainable_params}
    row.update({k: v for k, v in metrics.items() if k not in row})
    row.update(extra)
    return row
