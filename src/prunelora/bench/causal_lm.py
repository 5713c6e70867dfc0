"""`prunelora bench --task causal-lm`: seconds per step and tensor peak of each surgery on a causal LM of a
realistic width, against full finetuning with the same objective.

The embedded benchmark's model (width 256, 3.3 M parameters) is bound by operator overhead: at that size no
surgery can be cheaper per step, whatever it trains. This bench builds a model of the shape users bring (a
Qwen2-0.5B-shaped config: 24 blocks of width 896, 494 M parameters, random weights: the cost of a step does not
depend on what the weights hold) or takes the user's own (`--model hf:DIR`), draws random token rows, and runs
each method through the library's own path (runner/causal_lm.unlearn_with: the surgery, the objective, fit),
one epoch of `--steps` steps over the forget rows. Reported per method: seconds per step (fit's clocks), the
tensor peak (CUDA's max allocated; on the CPU the live tensor bytes of an untimed epoch of its own), trainable
and total parameters, and both as ratios to full finetuning with the same objective (`npo@prune+lora` against
`npo`). bf16 on CUDA, fp32 on the CPU.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import storage
from ..errors import UserError

# Published shapes, built with random weights (no download): the configs' own values.
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2-0.5b": {"family": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
                   "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "head_dim": 64,
                   "tie_word_embeddings": True, "max_position_embeddings": 4096},
    "tiny": {"family": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "tie_word_embeddings": False, "max_position_embeddings": 256},
}
DEFAULT_METHODS = ("npo", "npo@prune", "npo@lora", "npo@prune+lora", "graddiff", "graddiff@prune", "graddiff@lora",
                   "graddiff@prune+lora")


@dataclasses.dataclass
class LMBenchOptions:
    """What the bench builds and runs."""

    shape: str = "qwen2-0.5b"
    model: str | None = None  # hf:DIR: the user's own model instead of a shape
    methods: tuple[str, ...] = DEFAULT_METHODS
    steps: int = 2
    batch_size: int = 2
    seq_len: int = 64
    seed: int = 0
    out: str = "runs/bench-causal-lm"


def build(options: LMBenchOptions, device: torch.device) -> nn.Module:
    """The model to measure: the user's, or a published shape with random weights."""
    import transformers as T

    from ..models.causal_lm.loading import load_causal_lm, quiet_transformers

    quiet_transformers()
    if options.model:
        model, _ = load_causal_lm(options.model, device)
        return model
    if options.shape not in SHAPES:
        raise UserError(f"unknown model shape '{options.shape}' (choose {', '.join(SHAPES)}, or --model hf:DIR)")
    values = dict(SHAPES[options.shape])
    family = values.pop("family")
    config = T.AutoConfig.for_model(family, **values)
    torch.manual_seed(options.seed)
    return T.AutoModelForCausalLM.from_config(config).to(device)


def token_rows(n: int, options: LMBenchOptions, vocab: int, device: torch.device, name: str):
    """n random rows of seq_len tokens, the loss on all but the first quarter (a prompt)."""
    from ..data.text.tokens import IGNORE, TokenSet

    generator = torch.Generator().manual_seed(options.seed + (0 if name == "forget" else 1))
    ids = torch.randint(0, vocab, (n, options.seq_len), generator=generator)
    labels = ids.clone()
    labels[:, : options.seq_len // 4] = IGNORE
    return TokenSet([f"{name}:{i}" for i in range(n)], ids, torch.ones_like(ids), labels).to(device)


def checked_methods(options: LMBenchOptions) -> list:
    """The methods to time, after the options are checked (before anything is built or written)."""
    from ..methods import get_method
    from ..registry import CAUSAL_LM

    if options.steps < 1 or options.batch_size < 1 or options.seq_len < 8:
        raise UserError("--steps and --batch-size must be at least 1, --seq-len at least 8")
    if not options.model and options.shape not in SHAPES:
        raise UserError(f"unknown model shape '{options.shape}' (choose {', '.join(SHAPES)}, or --model hf:DIR)")
    methods = [get_method(name, CAUSAL_LM) for name in options.methods]
    if not methods or any(m.exact for m in methods):
        raise UserError("the bench times unlearning steps: give --methods without Retrain")
    return methods


def run(options: LMBenchOptions, device: torch.device, progress: bool = False, say=print) -> dict[str, Any]:
    """Every method once on the same model and rows; the rows of bench.json."""
    from ..config.causal_lm import resolve
    from ..runner.causal_lm import unlearn_with

    methods = checked_methods(options)
    original = build(options, device)
    if device.type == "cuda":
        original = original.to(torch.bfloat16)
    vocab = int(original.get_input_embeddings().weight.shape[0])
    n = options.steps * options.batch_size
    forget, retain = token_rows(n, options, vocab, device, "forget"), token_rows(n, options, vocab, device, "retain")
    config = resolve(None, {"unlearn": {"epochs": 1, "batch_size": options.batch_size}})
    rows = []
    for method in methods:
        say(f"bench {method.name}: {options.steps} steps of {options.batch_size} x {options.seq_len} tokens")
        started = time.perf_counter()
        cost = unlearn_with(method, original, retain, forget, config, options.seed, progress=progress).cost
        rows.append({"method": method.name, "label": method.label, "sec_per_step": cost["sec_per_step"],
                     "peak_memory_mb": cost["peak_memory_mb"], "trainable_params": cost["trainable_params"],
                     "params": cost["params"], "wall_seconds": time.perf_counter() - started})
    add_ratios(rows)
    return {"options": dataclasses.asdict(options), "device": str(device),
            "params": sum(p.numel() for p in original.parameters()), "rows": rows}


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's seconds per step and tensor peak over those of full finetuning with its objective."""
    by_name = {r["method"]: r for r in rows}
    for row in rows:
        base = by_name.get(row["method"].split("@", 1)[0])
        for key, ratio in (("sec_per_step", "step_vs_full"), ("peak_memory_mb", "peak_vs_full")):
            ok = base is not None and row.get(key) is not None and base.get(key)
            row[ratio] = row[key] / base[key] if ok else None


def markdown(result: dict[str, Any]) -> str:
    """bench.md: the table, with what was measured and where."""
    o = result["options"]
    what = o["model"] or f"{o['shape']} (random weights)"
    head = ("| method | s / step | x full | tensor peak (MB) | x full | trainable | params |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    lines = [f"{what}, {_millions(result['params'])} parameters, {o['steps']} steps of {o['batch_size']} x "
             f"{o['seq_len']} tokens, on {result['device']}", "", head]
    for r in result["rows"]:
        def num(value, spec):
            return format(value, spec) if value is not None else "-"
        lines.append(f"| {r['label']} | {num(r['sec_per_step'], '.2f')} | {num(r['step_vs_full'], '.2f')} | "
                     f"{num(r['peak_memory_mb'], '.0f')} | {num(r['peak_vs_full'], '.2f')} | "
                     f"{_millions(r['trainable_params'])} | {_millions(r['params'])} |")
    return "\n".join(lines) + "\n"


def _millions(count: int) -> str:
    return f"{count / 1e6:.3g} M"


def write(result: dict[str, Any], out: Path) -> None:
    storage.write_json(out / "bench.json", result)
    storage.write_text(out / "bench.md", markdown(result))


def bench_from_flags(options: LMBenchOptions, device_name: str, overwrite: bool, progress: bool) -> dict[str, Any]:
    """The command: the output folder claimed first (nothing of another run replaced), then the bench."""
    from .. import run_folder
    from ..machine import select_device

    checked_methods(options)
    device = select_device(device_name)
    out = Path(options.out)
    run_folder.claim(out, "bench-causal-lm", dataclasses.asdict(options), overwrite,
                     reads=tuple(p for p in [options.model and options.model.removeprefix("hf:")] if p))
    result = run(options, device, progress)
    write(result, out)
    return result
