"""Speed and memory benchmark of the unlearning methods: where the time and the memory go.

For each model and method (and prune mode) the harness runs the project's own pieces, never a
second training loop: the method's ``prepare`` builds the model, ``fit`` trains it on the retain
set (with the cached frozen prefix where the method allows it, as ``run_method`` does), and
``MemoryMeter`` watches prepare + fit. It reports

* seconds per unlearning epoch: the median of the timed epochs of ``History.epoch_seconds``,
  after the warm-up epochs (excluded); the one-off prefix pass is ``History.setup_seconds``;
* images per second: retain images / median seconds per epoch;
* peak memory of prepare + fit: CUDA's max allocated, or on the CPU the peak of live tensor bytes
  (metrics/tensor_memory.py), measured in a one-epoch run of its own so that its per-op bookkeeping
  never slows the timed epochs; beside it the resident-set growth of the timed run (``rss_growth_mb``);
* FLOPs per training image, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one
  ``fit`` epoch on a single batch of a freshly prepared model, minus the FLOPs of building the
  prefix cache for that batch (reported apart, as a one-off cost per image);
* achieved FLOP/s (FLOPs per image x images per second), the machine's fp32 peak measured in the same
  run (the best of several matmul shapes and layouts and a convolution: machine.matmul_flops_per_sec),
  and their ratio (model FLOP utilisation), never above 100 %: a row that beats every kernel measured
  becomes the peak, and the table says so;
* the ratios of seconds per epoch and peak memory to finetune of the same model, in the same run.

FLOP counts are deterministic (they depend on shapes only); timings and memory are not, so final
numbers belong to a quiet machine. The original model is freshly initialised: the cost of an
unlearning epoch does not depend on what the weights hold.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import run_folder, storage
from .errors import UserError
from .machine import LoadProbe, facts, matmul_flops_per_sec


def _paper_unlearning() -> list[str]:
    """The paper's unlearning methods (every paradigm but Retrain), from the registry."""
    from .methods import METHODS

    return [m.name for m in METHODS.values() if m.paper and not m.exact]


DEFAULT_METHODS = _paper_unlearning()
DEFAULT_MODELS = ["resnet18", "vit"]


def prunes(method: str) -> bool:
    """Whether the method prunes (it is then measured in every prune mode)."""
    from .methods import get_method

    return get_method(method).prunes


PRUNE_MODES = ("mask", "remove")
DEFAULT_TRAIN_PER_CLASS = 500  # the cpu preset's subset: 4500 retain images on a 10-class set
BENCH_FILE = "bench.json"
TABLE_FILE = "bench.md"

# (key, Markdown header, digits); None values print as n/a, with the reason in the JSON row.
COLUMNS: list[tuple[str, str, int]] = [
    ("sec_per_epoch", "s/epoch", 3),
    ("images_per_sec", "img/s", 0),
    ("sec_ratio_vs_finetune", "time x finetune", 2),
    ("peak_memory_mb", "tensor peak MB", 1),
    ("memory_ratio_vs_finetune", "mem x finetune", 2),
    ("rss_growth_mb", "RSS growth MB", 1),
    ("flops_per_image", "train MFLOP/img", 2),
    ("prefix_flops_per_image", "prefix MFLOP/img (once)", 2),
    ("prefix_seconds", "prefix s (once)", 3),
    ("achieved_flops_per_sec", "achieved GFLOP/s", 2),
    ("mfu", "MFU %", 2),
    ("trainable_params", "trainable", 0),
]
_SCALE = {"flops_per_image": 1e-6, "prefix_flops_per_image": 1e-6, "achieved_flops_per_sec": 1e-9, "mfu": 100.0}


# -- FLOP counting ----------------------------------------------------------------------------
def _flop_mapping() -> dict:
    """Formulas FlopCounterMode lacks: the CPU flash attention kernel that SDPA dispatches to."""
    import torch.utils.flop_counter as fc

    aten = torch.ops.aten
    mapping: dict = {}

    def forward(q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)

    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return mapping


def flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping=_flop_mapping())


# -- one measured variant --------------------------------------------------------------------
@dataclasses.dataclass
class Variant:
    model: str
    method: str
    prune_mode: str | None  # None for methods that do not prune

    @property
    def label(self) -> str:
        return self.method + (f" ({self.prune_mode})" if self.prune_mode else "")


def _apply_compile(model: nn.Module, cached: bool) -> str:
    """torch.compile in place (the model stays the same object, so fit and the prefix cache see it).

    Without a cached prefix the whole model is compiled (one graph, cross-layer fusion). With one,
    fit calls the suffix stages one by one on the cached features, so each of those is compiled;
    the prefix runs once without gradients and stays eager.
    """
    from .prefix_cache import flat_stages, split_point

    stages = flat_stages(model) if cached else None
    if stages:
        suffix = stages[split_point(stages):]
        for stage in suffix:
            stage.compile()
        return f"suffix stages ({len(suffix)})"
    model.compile()
    return "whole model"


def _layout(model: nn.Module, channels_last: bool) -> None:
    if channels_last:
        model.to(memory_format=torch.channels_last)


def _measure_timing(variant: Variant, original: nn.Module, ctx, config, retain, *, seed: int, epochs: int,
                    channels_last: bool, compile_model: bool, progress: bool, cached: bool = False) -> dict[str, Any]:
    """The project's run_method without deliverable snapshots, timed (CPU memory: resident-set growth only)."""
    from .runner import run_method

    out: dict[str, Any] = {}

    def hook(model: nn.Module) -> None:
        _layout(model, channels_last)
        if compile_model:
            out["compile_mode"] = _apply_compile(model, cached)

    run = run_method(variant.method, original, retain, ctx, seed=seed, precision=config.precision,
                     cache_prefix=config.unlearn.cache_prefix, progress=progress, epochs=epochs,
                     snapshots=False, model_hook=hook, count_tensors=False)
    out.update(history=run.history, prepare_seconds=run.surgery_sec, rss_growth_mb=run.rss_growth_mb,
               trainable_params=run.trainable_params, total_params=run.total_params, info=dict(run.prepared.info))
    return out


def _measure_memory(variant: Variant, original: nn.Module, ctx, config, retain, *, seed: int,
                    channels_last: bool) -> tuple[float, str]:
    """Peak memory of prepare + prefix cache + one epoch (the steady state of every later one): CUDA's
    max allocated, or the CPU's live tensor bytes."""
    from .runner import run_method

    run = run_method(variant.method, original, retain, ctx, seed=seed, precision=config.precision,
                     cache_prefix=config.unlearn.cache_prefix, progress=False, epochs=1, snapshots=False,
                     model_hook=lambda model: _layout(model, channels_last))
    return run.peak_memory_mb, run.memory_kind


def _count_flops(variant: Variant, original: nn.Module, config, ctx, retain, *, seed: int,
                 cache_prefix: bool) -> dict[str, float]:
    """FLOPs per image of one training step (suffix only where the prefix is cached) and of the prefix.

    run_method on one batch for one epoch: the counter opens after surgery (pruning's own forward
    passes are not training) and the prefix pass is counted apart.
    """
    from .prefix_cache import PrefixCache
    from .runner import run_method

    batch = retain.subset(torch.arange(min(config.unlearn.batch_size, len(retain))))
    counted: dict[str, Any] = {"prefix": 0}
    step = flop_counter()

    def hook(model: nn.Module) -> None:
        if cache_prefix:
            with flop_counter() as prefix:
                cache = PrefixCache.build(model, batch)
            counted["prefix"] = prefix.get_total_flops() if cache is not None else 0
        step.__enter__()
        counted["open"] = True

    try:
        run_method(variant.method, original, batch, dataclasses.replace(ctx, retain=batch), seed=seed,
                   precision=config.precision, cache_prefix=cache_prefix, progress=False, epochs=1,
                   snapshots=False, model_hook=hook, count_tensors=False)
    finally:
        if counted.get("open"):
            step.__exit__(None, None, None)
    total = step.get_total_flops() - counted["prefix"]
    return {"flops_per_image": total / len(batch), "prefix_flops_per_image": counted["prefix"] / len(batch),
            "flop_batch": len(batch)}


def _na_row(variant: Variant, reason: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"model": variant.model, "method": variant.method, "prune_mode": variant.prune_mode,
                           "status": "n/a", "reason": reason, **extra}
    for key, _, _ in COLUMNS:
        row[key] = None
    row["na"] = {key: reason for key, _, _ in COLUMNS}
    return row


def measure_variant(variant: Variant, original: nn.Module, config, plan, family: str, fresh, retain, *,
                    seed: int, warmup_epochs: int, timed_epochs: int, channels_last: bool = False,
                    compile_model: bool = False, progress: bool = False,
                    matmul_rate: float | None = None) -> dict[str, Any]:
    """One row: timing, memory and FLOPs of one method on one model (ratios are filled in later)."""
    from .methods import get_method
    from .runner import method_context

    ctx = method_context(config, plan, family, fresh, retain)
    epochs = warmup_epochs + timed_epochs
    base = {"channels_last": channels_last, "compile": compile_model}
    # FLOPs first: one eager step on one batch, which also warms up what a first call initialises
    # (imports, kernels, allocator pools), so that the timed run's memory and epochs do not carry it.
    cache_prefix = config.unlearn.cache_prefix and not get_method(variant.method).exact
    try:
        flops = _count_flops(variant, original, config, ctx, retain, seed=seed, cache_prefix=cache_prefix)
    except UserError as exc:
        if variant.prune_mode == "remove":  # e.g. the ViT: its pruned layers write into the residual stream
            return _na_row(variant, str(exc), **base)
        raise
    try:
        timing = _measure_timing(variant, original, ctx, config, retain, seed=seed, epochs=epochs,
                                 channels_last=channels_last, compile_model=compile_model, progress=progress,
                                 cached=flops["prefix_flops_per_image"] > 0)
    except Exception as exc:  # noqa: BLE001 - a compiler failure is reported, then measured eagerly
        if not compile_model:
            raise
        base["compile"] = False
        base["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        timing = _measure_timing(variant, original, ctx, config, retain, seed=seed, epochs=epochs,
                                 channels_last=channels_last, compile_model=False, progress=progress,
                                 cached=flops["prefix_flops_per_image"] > 0)
    peak_mb, memory_kind = _measure_memory(variant, original, ctx, config, retain, seed=seed,
                                           channels_last=channels_last)
    history = timing["history"]
    timed = history.epoch_seconds[warmup_epochs:]
    sec = statistics.median(timed)
    cached = bool(history.cache)
    if cached != (flops["prefix_flops_per_image"] > 0):  # the full set's cache was refused (memory budget)
        flops = _count_flops(variant, original, config, ctx, retain, seed=seed, cache_prefix=cached)
    images_per_sec = len(retain) / sec if sec > 0 else None
    row: dict[str, Any] = {
        "model": variant.model, "method": variant.method, "prune_mode": variant.prune_mode, "status": "ok",
        "sec_per_epoch": sec, "images_per_sec": images_per_sec,
        "sec_ratio_vs_finetune": None, "peak_memory_mb": peak_mb,
        "memory_ratio_vs_finetune": None, "memory_kind": memory_kind, "rss_growth_mb": timing["rss_growth_mb"],
        "flops_per_image": flops["flops_per_image"],
        "prefix_flops_per_image": flops["prefix_flops_per_image"] if cached else None,
        "prefix_seconds": history.setup_seconds if cached else None,
        "achieved_flops_per_sec": None, "mfu": None,
        "trainable_params": timing["trainable_params"], "total_params": timing["total_params"],
        "retain_images": len(retain), "batch_size": config.unlearn.batch_size, "flop_batch": flops["flop_batch"],
        "warmup_epoch_seconds": history.epoch_seconds[:warmup_epochs], "timed_epoch_seconds": timed,
        "prepare_seconds": timing["prepare_seconds"], "prefix_cache": history.cache or None,
        "info": timing["info"], **base, "na": {},
    }
    if "compile_mode" in timing:
        row["compile_mode"] = timing["compile_mode"]
    if not cached:
        reason = "no cached prefix: the method trains (or batch-normalises) layers from the start of the network"
        row["na"].update(prefix_flops_per_image=reason, prefix_seconds=reason)
    if images_per_sec is not None:
        row["achieved_flops_per_sec"] = flops["flops_per_image"] * images_per_sec
        if matmul_rate:
            row["mfu"] = row["achieved_flops_per_sec"] / matmul_rate
    else:
        row["na"].update(images_per_sec="epoch time below the clock's resolution")
    for key in ("achieved_flops_per_sec", "mfu"):
        if row[key] is None and key not in row["na"]:
            row["na"][key] = "no images-per-second figure" if images_per_sec is None else "matmul rate not measured"
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Seconds per epoch and peak memory as multiples of finetune of the same model (same run)."""
    for row in rows:
        if row["status"] != "ok":
            continue
        ref = next((r for r in rows if r["model"] == row["model"] and r["method"] == "finetune"
                    and r["status"] == "ok"), None)
        for key, ratio in (("sec_per_epoch", "sec_ratio_vs_finetune"), ("peak_memory_mb", "memory_ratio_vs_finetune")):
            if ref is None:
                row["na"][ratio] = "finetune was not benchmarked for this model"
            elif ref[key] is None or ref[key] <= 0:
                row["na"][ratio] = f"finetune's {key} is 0 (below what the meter resolves)"
            elif row[key] is None:
                row["na"][ratio] = f"no {key} for this row"
            else:
                row[ratio] = row[key] / ref[key]
                row["na"].pop(ratio, None)


def cap_utilisation(rows: list[dict[str, Any]], matmul: dict[str, Any]) -> bool:
    """No MFU above 100 %: where a row's achieved rate beats the measured peak, the peak becomes that rate
    (matmul["raised_by"] names the row, "measured_flops_per_sec" keeps the kernels' best) and every MFU is
    recomputed. Whether the peak was raised."""
    achieved = [r for r in rows if r.get("achieved_flops_per_sec")]
    best = max(achieved, key=lambda r: r["achieved_flops_per_sec"], default=None)
    if best is None or best["achieved_flops_per_sec"] <= matmul["flops_per_sec"]:
        return False
    matmul["measured_flops_per_sec"] = matmul["flops_per_sec"]
    matmul["flops_per_sec"] = best["achieved_flops_per_sec"]
    matmul["raised_by"] = " ".join(str(part) for part in (best["model"], best["method"], best["prune_mode"]) if part)
    for row in achieved:
        if row.get("mfu") is not None:
            row["mfu"] = row["achieved_flops_per_sec"] / matmul["flops_per_sec"]
    return True


# -- the whole benchmark ---------------------------------------------------------------------
def _model_args(models: Sequence[str], model_args: dict[str, dict[str, Any]] | None,
                preset_name: str = "cpu") -> dict[str, dict[str, Any]]:
    from .config import PRESETS

    preset = PRESETS[preset_name]["model_args"]
    extra = model_args or {}
    unknown = sorted(set(extra) - set(models))
    if unknown:
        raise UserError(f"model arguments given for '{unknown[0]}', which is not benchmarked (models: {', '.join(models)})")
    return {name: {**preset.get(name, {}), **extra.get(name, {})} for name in models}


def run_benchmark(models: Sequence[str] = DEFAULT_MODELS, methods: Sequence[str] = DEFAULT_METHODS, *,
                  model_args: dict[str, dict[str, Any]] | None = None, dataset: str | None = None,
                  data_root: str | None = None, train_per_class: int | None = None, preset: str | None = None,
                  forget_class: int = 3, device: str = "auto", warmup_epochs: int = 1, timed_epochs: int = 3,
                  min_timed_epochs: int = 3, prune_modes: Sequence[str] = PRUNE_MODES, batch_size: int | None = None,
                  precision: str = "fp32", channels_last: bool = False, compile_model: bool = False,
                  seed: int = 0, matmul_size: int = 2048, matmul_repeats: int = 5,
                  overrides: dict[str, Any] | None = None, out: str | Path | None = "runs/bench",
                  progress: bool = False, log=None, overwrite: bool = False,
                  yaml_path: str | Path | None = None) -> dict[str, Any]:
    """Benchmark every (model, method, prune mode); write bench.json and bench.md under `out` (None: no files).

    preset (default $PRUNELORA_PRESET, else cpu) gives the model sizes and, unless train_per_class
    is given, the subset size. Returns {"machine", "settings", "matmul", "rows", "markdown"}. Every
    row has all COLUMNS keys: a number, or None with the reason in row["na"][key]. Raises UserError
    for user mistakes.
    """
    from .config import PRESET_ENV, PRESETS, _merge, resolve
    from .data import ImageSet, class_splits, load_dataset
    from .methods import get_method
    from .models import build_model, get_spec
    from .pipeline import select_device

    started = time.perf_counter()
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    models, methods, prune_modes = list(dict.fromkeys(models)), list(dict.fromkeys(methods)), list(dict.fromkeys(prune_modes))
    if not models:
        raise UserError("at least one model is needed (for example --models resnet18)")
    if not methods:
        raise UserError("at least one method is needed (for example --methods finetune,lora)")
    for name in methods:
        if get_method(name).uses_forget or get_method(name).class_only:
            raise UserError(f"bench times the retain-only methods; {name} draws on the forget set (its cost is in "
                            "reproduce's RTE and Total columns)")
    bad = [m for m in prune_modes if m not in PRUNE_MODES]
    if bad or not prune_modes:
        raise UserError(f"unknown prune mode '{bad[0] if bad else ''}' (choose from: {', '.join(PRUNE_MODES)})")
    if min_timed_epochs < 1:
        raise UserError(f"min_timed_epochs must be at least 1, got {min_timed_epochs}")
    if timed_epochs < min_timed_epochs:
        raise UserError(f"timed epochs must be at least {min_timed_epochs} (the median of several), got {timed_epochs}")
    if warmup_epochs < 0:
        raise UserError(f"warm-up epochs cannot be negative, got {warmup_epochs}")
    preset = preset or os.environ.get(PRESET_ENV) or "cpu"
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}' (choose from: {', '.join(PRESETS)})")
    if train_per_class is None:
        train_per_class = PRESETS[preset].get("data", {}).get("train_per_class") or DEFAULT_TRAIN_PER_CLASS
    if train_per_class <= 0:
        raise UserError(f"train_per_class must be positive, got {train_per_class}")
    if matmul_size <= 0 or matmul_repeats <= 0:
        raise UserError(f"matmul size and repeats must be positive, got {matmul_size} and {matmul_repeats}")
    args = _model_args(models, model_args, preset)
    specs = {name: get_spec(name, args[name]) for name in models}

    unlearn = {"epochs": [warmup_epochs + timed_epochs]}
    if batch_size is not None:
        unlearn["batch_size"] = batch_size
    base_overrides = _merge({"unlearn": unlearn, "precision": precision, "device": device}, overrides or {})
    config = resolve(preset=preset, yaml_path=yaml_path, overrides=base_overrides)  # validates sizes, rates, ...
    dev = select_device(config.device)
    dataset = dataset or config.data.dataset
    data_root = data_root or config.data.data_root
    stream = config.data.stream
    if stream and channels_last:
        raise UserError("--channels-last lays out the images held in memory: leave out --stream to use it")
    raw = load_dataset(dataset, data_root, allow_download=False, stream=stream)
    splits = class_splits(raw, forget_class, train_per_class, 1, seed, dev, stream=stream)
    retain = splits.retain_train
    if len(retain) == 0:
        raise UserError("the retain set is empty (raise --train-per-class)")
    if channels_last:  # batches gathered from it keep the layout (indexing and .float() preserve it)
        retain = ImageSet(retain.images.contiguous(memory_format=torch.channels_last), retain.labels)
    channels, size, _ = splits.image_shape

    def builder(name: str):
        def fresh() -> nn.Module:
            return build_model(name, splits.num_classes, channels, size, splits.mean, splits.std, args[name])
        return fresh

    for name in models:  # refuse bad architecture arguments before anything is measured
        builder(name)()
    probe = LoadProbe(torch.get_num_threads())
    if out is not None:  # never over another run's results (a bench with the same settings replaces its own)
        identity = {"models": models, "model_args": args, "methods": methods, "prune_modes": prune_modes,
                    "dataset": dataset, "data_root": data_root, "train_per_class": train_per_class,
                    "forget_class": forget_class, "device": str(dev), "warmup_epochs": warmup_epochs,
                    "timed_epochs": timed_epochs, "batch_size": config.unlearn.batch_size, "precision": precision,
                    "channels_last": channels_last, "compile": compile_model, "seed": seed,
                    "matmul_size": matmul_size, "stream": stream, "overrides": overrides or {}}
        run_folder.claim(out, "bench", identity, overwrite)
    machine = facts(dev)
    log(f"[bench] {machine['device_name']} ({machine['threads']} threads), {dataset}: "
        f"{len(retain)} retain images, {warmup_epochs} warm-up + {timed_epochs} timed epochs")
    matmul = matmul_flops_per_sec(dev, matmul_size, matmul_repeats)
    log(f"[bench] fp32 peak: {matmul['flops_per_sec'] / 1e9:.1f} GFLOP/s ({matmul['kernel']})")

    rows: list[dict[str, Any]] = []
    for name in models:
        spec = specs[name]
        torch.manual_seed(seed)
        original = builder(name)().to(dev)
        for method in methods:
            modes = prune_modes if prunes(method) else [None]
            for mode in modes:
                variant = Variant(name, method, mode)
                cfg = config if mode is None else resolve(
                    preset=preset, yaml_path=yaml_path,
                    overrides=_merge(base_overrides, {"unlearn": {"prune_mode": mode}}))
                row = measure_variant(variant, original, cfg, spec.plan, spec.family, builder(name), retain,
                                      seed=seed, warmup_epochs=warmup_epochs, timed_epochs=timed_epochs,
                                      channels_last=channels_last, compile_model=compile_model, progress=progress,
                                      matmul_rate=matmul["flops_per_sec"])
                row["model_args"] = args[name]
                rows.append(row)
                if row["status"] == "ok":
                    log(f"[bench] {name} {variant.label}: {row['sec_per_epoch']:.3f} s/epoch, "
                        f"{row['flops_per_image'] / 1e6:.2f} MFLOP/img, {row['peak_memory_mb']:.1f} MB")
                else:
                    log(f"[bench] {name} {variant.label}: n/a ({row['reason']})")
    add_ratios(rows)
    if cap_utilisation(rows, matmul):
        log(f"[bench] {matmul['raised_by']} trained at {matmul['flops_per_sec'] / 1e9:.1f} GFLOP/s, above every "
            "kernel measured: that is the peak")
    settings = {"models": models, "model_args": args, "methods": methods, "prune_modes": prune_modes,
                "dataset": dataset, "data_root": data_root, "train_per_class": train_per_class, "preset": preset,
                "forget_class": forget_class, "retain_images": len(retain), "image_shape": list(splits.image_shape),
                "warmup_epochs": warmup_epochs, "timed_epochs": timed_epochs,
                "batch_size": config.unlearn.batch_size, "precision": config.precision,
                "channels_last": channels_last, "compile": compile_model, "seed": seed,
                "unlearn": dataclasses.asdict(config.unlearn)}
    results = {"machine": machine, "settings": settings, "matmul": matmul, "rows": rows,
               "wall_sec": time.perf_counter() - started, "machine_load": probe.finish()}
    results["markdown"] = markdown(results)
    if out is not None:
        out = Path(out)
        storage.write_json(out / BENCH_FILE, results)
        storage.write_text(out / TABLE_FILE, results["markdown"])
        results["files"] = [str(out / BENCH_FILE), str(out / TABLE_FILE)]
    return results


# -- report -------------------------------------------------------------------------------------
def _cell(row: dict[str, Any], key: str, digits: int) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = value * _SCALE.get(key, 1.0)
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
    from .report.tables import memory_note

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


# -- command line --------------------------------------------------------------------------------
def build_arg_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The bench subcommand's options: the run, data and model options every command shares (cli.py), and
    the benchmark's own. Sizes, learning rates and architecture arguments come from the config like
    everywhere else (--preset, --config, --set model_args.resnet18.width=16, --set unlearn.lora_dropout=0)."""
    from .cli import _data, _general, _models, _names

    _general(parser, training=True)
    _data(parser, from_checkpoint=False)
    _models(parser)
    g = parser.add_argument_group("benchmark")
    g.add_argument("--methods", type=_names, help=f"comma-separated retain-only methods (default "
                                                  f"{','.join(DEFAULT_METHODS)})")
    g.add_argument("--prune-modes", type=_names, default=list(PRUNE_MODES),
                   help="prune modes of the pruning methods (default mask,remove)")
    g.add_argument("--epochs", type=int, default=3, dest="timed_epochs",
                   help="timed epochs, median reported (default 3, at least 3)")
    g.add_argument("--warmup-epochs", type=int, default=1, help="untimed warm-up epochs (default 1)")
    g.add_argument("--channels-last", action="store_true", help="channels-last memory format (the config's "
                                                                "channels_last)")
    g.add_argument("--compile", action="store_true", help="torch.compile the prepared model (failures are reported)")
    g.add_argument("--matmul-size", type=int, default=2048, help="side of the square matmuls of the fp32 peak "
                                                              "(MFU reference; default 2048)")
    return parser


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark for parsed options (raises UserError on user mistakes)."""
    from .cli import overrides
    from .config import resolve
    from .machine import set_threads

    flags = overrides(args)
    config = resolve(yaml_path=args.config, overrides=flags)  # the shared flags, checked once
    set_threads(config.threads)
    asked = flags.get("model_args") or {}
    return run_benchmark(
        config.models, args.methods or DEFAULT_METHODS, model_args={m: asked[m] for m in config.models if m in asked},
        dataset=config.data.dataset, data_root=config.data.data_root, train_per_class=config.data.train_per_class,
        preset=config.preset, forget_class=config.data.forget_class, device=config.device,
        warmup_epochs=args.warmup_epochs, timed_epochs=args.timed_epochs, prune_modes=args.prune_modes,
        precision=config.precision, channels_last=args.channels_last or config.channels_last,
        compile_model=args.compile, seed=config.seeds[0], matmul_size=args.matmul_size,
        overrides={k: v for k, v in flags.items() if k not in ("out", "models", "methods", "model_args")},
        out=config.out or "runs/bench", progress=not args.no_progress, overwrite=args.overwrite,
        yaml_path=args.config)


def report(results: dict[str, Any]) -> int:
    """Print the Markdown table and the files written; the exit status (0)."""
    print(results["markdown"])
    for path in results.get("files", []):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`prunelora bench ...` (also `python -m benchmarks.unlearn_speed ...`)."""
    from .cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
