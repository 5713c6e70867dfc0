"""A run's results: the rows with their derived columns, what the run cost, and every results file written."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..config import to_dict
from ..machine import facts
from ..metrics.standalone import add_standalone_verdicts
from ..metrics.summary import add_retrain_gap, aggregate_seeds
from ..metrics.verdict import add_verdicts
from ..report import write_results
from ..runner import resolved_settings

if TYPE_CHECKING:  # the driver hands itself in; results never run stages
    from .stages import Experiment


def finish(exp: Experiment, rows: list[dict], started: float, partial: bool = False) -> dict[str, Any]:
    """Gap to retrain, seed aggregates, sizes, reuse, the machine's load; then write every results file.

    wall_sec counts the recorded seconds of the stages reused from an earlier invocation, so a
    resumed run reports what the whole run cost; elapsed_sec is this invocation alone.
    """
    rows = add_retrain_gap(rows)
    if len(exp.config.seeds) > 1:
        rows += aggregate_seeds(rows)
    rows = add_standalone_verdicts(add_verdicts(rows))
    elapsed = time.perf_counter() - started
    seed = exp.config.seeds[0]
    sizes = {name: len(part) for name, part in exp.splits(seed, exp.reached(seed)).named().items()}
    results = {"config": to_dict(exp.config), "rows": rows, "environment": facts(exp.device),
               **time_split(elapsed, exp.training_sec),
               "wall_sec": elapsed + exp.reused_sec, "elapsed_sec": elapsed,
               "reused": {"stages": exp.reused_stages, "sec": exp.reused_sec},
               "data_sizes": sizes, "warnings": list(exp.warnings), "out": str(exp.out),
               "evidence_sec": dict(exp.timings), **exp.extra}
    results["method_settings"] = method_settings(exp)
    if exp.sequential:
        results["requests"] = [r.describe(exp.raw.class_names) for r in exp.requests]
        results["complete"] = not partial
    if exp.probe is not None:
        results["machine_load"] = exp.probe.finish()
    write_results(results, exp.out)
    return results


def method_settings(exp: Experiment) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> model -> the settings it ran with, fully resolved (results.json, the report)."""
    cfg, side = exp.config, exp.raw.shape[-1]
    return {method: {name: resolved_settings(cfg, method, exp.family(name), exp.flip, side) for name in cfg.models}
            for method in cfg.methods}


def time_split(wall_sec: float, training_sec: float) -> dict[str, Any]:
    """How much of a run went into training steps, and how much into everything else.

    Everything else: data loading, surgery, evaluation, attacks, checkpoints (not the final
    results files and plots, written after this is measured).
    """
    other = max(0.0, wall_sec - training_sec)
    return {"wall_sec": wall_sec, "time_split": {
        "training_steps_sec": training_sec, "other_sec": other,
        "other_share": other / wall_sec if wall_sec > 0 else None}}
