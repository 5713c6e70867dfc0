"""The benchmark's Markdown page (bench.md) and what the command prints."""
from __future__ import annotations

import math
from typing import Any

from ..report.tables import memory_note
from .columns import COLUMNS, SCALE


def _cell(row: dict[str, Any], key: str, digits: int) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = value * SCALE.get(key, 1.0)
    if isinstance(value, int) or digits == 0 or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def peak_line(mm: dict[str, Any]) -> str:
    """The MFU reference in words: the best kernel measured, or the training rate that beat it."""
    kernel = mm.get("kernel") or f"matmul {mm['size']}x{mm['size']}"
    measured = mm.get("measured_flops_per_sec", mm["flops_per_sec"])
    line = (f"fp32 peak (MFU reference): {measured / 1e9:.2f} GFLOP/s, the best of {len(mm.get('kernels') or [1])} "
            f"kernels ({kernel}; median of up to {mm['repeats']}).")
    if mm.get("raised_by"):
        line += (f" {mm['raised_by']} trained faster ({mm['flops_per_sec'] / 1e9:.2f} GFLOP/s): the peak is raised "
                 "to that rate, so no MFU reads above 100 %.")
    return line


def markdown(results: dict[str, Any]) -> str:
    m, s, mm = results["machine"], results["settings"], results["matmul"]
    lines = [
        "# Unlearning speed and memory",
        "",
        f"Machine: {m['device_name']} ({m['device']}), {m['threads']} torch threads, "
        f"torch {m['torch']}, CPU {m['cpu']}.",
        peak_line(mm),
        f"Data: {s['dataset']}, {s['retain_images']} retain images {tuple(s['image_shape'])}, batch {s['batch_size']}, "
        f"{s['precision']}; {s['warmup_epochs']} warm-up + {s['timed_epochs']} timed epochs (median). "
        f"channels_last {'on' if s['channels_last'] else 'off'}, compile {'on' if s['compile'] else 'off'}.",
        f"Peak memory: {memory_note(results['rows'])}, of prepare + prefix cache + one epoch (a run of its own); "
        "RSS growth: of the timed run (allocator and fixed costs included). FLOPs: FlopCounterMode over one training "
        "step (forward + backward; the cached prefix excluded and shown apart as a one-off cost per image).",
    ]
    load = results.get("machine_load") or {}
    if load.get("busy"):
        lines.append(f"**Warning:** other processes used {load['others_cpu_share'] * 100:.0f} % of the machine's CPU "
                     "while this ran: these timings are not comparable with a quiet machine's.")
    if s["compile"]:
        lines.append("torch.compile runs lazily in the warm-up epoch: its time is excluded, its memory is in the peak.")
    lines.append("")
    head = ["model", "method", "prune"] + [label for _, label, _ in COLUMNS]
    notes: list[str] = []
    for model in dict.fromkeys(r["model"] for r in results["rows"]):
        mine = [r for r in results["rows"] if r["model"] == model]
        margs = ", ".join(f"{k} {v}" for k, v in (mine[0].get("model_args") or {}).items())
        lines += [f"**{model}** ({margs})" if margs else f"**{model}**", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(COLUMNS)]
        for r in mine:
            cells = [model, r["method"], r["prune_mode"] or "-"] + [_cell(r, key, d) for key, _, d in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
            if r["status"] != "ok":
                notes.append(f"{model} {r['method']} ({r['prune_mode']}): n/a, {r['reason']}")
            if r.get("compile_error"):
                notes.append(f"{model} {r['method']}: torch.compile failed ({r['compile_error']}); measured eagerly")
        lines.append("")
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)



def report(results: dict[str, Any]) -> int:
    """Print the Markdown table and the files written; the exit status (0)."""
    print(results["markdown"])
    for path in results.get("files", []):
        print(f"wrote {path}")
    return 0
