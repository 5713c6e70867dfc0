"""Speed and memory benchmark of the unlearning methods: where the time and the memory go.

For each model and method (and prune mode) the harness runs the project's own pieces, never a
second training loop: the method's ``prepare`` builds the model, ``fit`` trains it on the retain
set (with the cached frozen prefix where the method allows it, as ``run_method`` does), and
``MemoryMeter`` watches prepare + fit. It reports

* seconds per unlearning epoch: the median of the timed epochs of ``History.epoch_seconds``,
  after the warm-up epochs (excluded); the one-off prefix pass is ``History.setup_seconds``;
* images per second: retain images / median seconds per epoch;
* peak memory of prepare + fit (CUDA max allocated, or CPU peak resident growth: ``memory_kind``);
* FLOPs per training image, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one
  ``fit`` epoch on a single batch of a freshly prepared model, minus the FLOPs of building the
  prefix cache for that batch (reported apart, as a one-off cost per image);
* achieved FLOP/s (FLOPs per image x images per second), the machine's fp32 matmul FLOP/s measured
  in the same run, and their ratio (model FLOP utilisation);
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
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import io, run_folder
from .errors import UserError, UserErrorParser
from .machine_load import LoadProbe


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
    ("peak_memory_mb", "peak MB", 1),
    ("memory_ratio_vs_finetune", "mem x finetune", 2),
    ("flops_per_image", "train MFLOP/img", 2),
    ("prefix_flops_per_image", "prefix MFLOP/img (once)", 2),
    ("prefix_seconds", "prefix s (once)", 3),
    ("achieved_flops_per_sec", "achieved GFLOP/s", 2),
    ("mfu", "MFU %", 2),
    ("trainable_params", "trainable", 0),
]
_SCALE = {"flops_per_image": 1e-6, "prefix_flops_per_image": 1e-6, "achieved_flops_per_sec": 1e-9, "mfu": 100.0}


# -- the machine ------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = info["cpu"]
    return info


def matmul_flops_per_sec(device: torch.device, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The device's own fp32 dense matmul rate: median of `repeats` timed `a @ b` after one warm-up.

    On the CPU the matmul uses torch's intra-op threads (torch.get_num_threads()), as training does.
    """
    from .metrics.cost import synchronize

    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device)
    b = torch.randn(size, size, generator=g).to(device)
    if device.type == "cuda":  # no TF32: the fp32 rate the training step gets by default
        allow = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = []
        for i in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            if i:  # the first is a warm-up
                seconds.append(time.perf_counter() - start)
    finally:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = allow
    median = statistics.median(seconds)
    return {"size": size, "dtype": "float32", "repeats": repeats, "seconds": seconds,
            "flops_per_matmul": 2 * size**3, "flops_per_sec": 2 * size**3 / median,
            "threads": torch.get_num_threads()}


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


# -- data ---------------------------------------------------------------------------------------
def _has_cifar10(root: Path) -> bool:
    return any((folder / "test_batch").is_file() for folder in (root / "cifar-10-batches-py", root))


def default_data(dataset: str | None, data_root: str | None) -> tuple[str, str | None]:
    """cifar10 where a copy is at hand (--data-root, $PRUNELORA_DATA, ../shared/data), else digits."""
    candidates = []
    if data_root:
        candidates.append(Path(data_root))
    if os.environ.get("PRUNELORA_DATA"):
        candidates.append(Path(os.environ["PRUNELORA_DATA"]))
    candidates += [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    found = next((c for c in candidates if c.is_dir() and _has_cifar10(c)), None)
    if dataset is None:
        dataset = "cifar10" if found is not None else "digits"
    if dataset == "cifar10" and data_root is None and found is not None:
        data_root = str(found)
    return dataset, data_root


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


def _measure_timing(variant: Variant, original: nn.Module, ctx, config, retain, *, seed: int, epochs: int,
                    channels_last: bool, compile_model: bool, progress: bool, cached: bool = False) -> dict[str, Any]:
    """The project's run_method without deliverable snapshots: prepare + fit under its MemoryMeter."""
    from .runner import run_method

    out: dict[str, Any] = {}

    def hook(model: nn.Module) -> None:
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if compile_model:
            out["compile_mode"] = _apply_compile(model, cached)

    run = run_method(variant.method, original, retain, ctx, seed=seed, precision=config.precision,
                     cache_prefix=config.unlearn.cache_prefix, progress=progress, epochs=epochs,
                     snapshots=False, model_hook=hook)
    out.update(history=run.history, prepare_seconds=run.surgery_sec, peak_memory_mb=run.peak_memory_mb,
               memory_kind=run.memory_kind, trainable_params=run.trainable_params,
               total_params=run.total_params, info=dict(run.prepared.info))
    return out


def _count_flops(variant: Variant, original: nn.Module, config, plan, family: str, fresh, retain, *,
                 seed: int, cache_prefix: bool) -> dict[str, float]:
    """FLOPs of one training step (suffix only where the prefix is cached) and of the prefix, per image."""
    from .methods import get_method
    from .prefix_cache import PrefixCache
    from .runner import method_context
    from .train import fit

    batch = retain.subset(torch.arange(min(config.unlearn.batch_size, len(retain))))
    ctx = method_context(config, plan, family, fresh, batch)  # structure does not depend on the data
    torch.manual_seed(seed)
    prepared = get_method(variant.method).prepare(original, ctx)
    prepared.model.to(retain.labels.device)
    if prepared.after_step is not None:
        prepared.after_step()
    prefix_flops = 0
    if cache_prefix:
        with flop_counter() as counter:
            cache = PrefixCache.build(prepared.model, batch)
        prefix_flops = counter.get_total_flops() if cache is not None else 0
    with flop_counter() as counter:
        fit(prepared.model, batch, prepared.optim, 1, seed=seed, after_step=prepared.after_step,
            objective=prepared.objective,
            cache_prefix=cache_prefix, precision=config.precision, progress=False)
    step = counter.get_total_flops() - prefix_flops
    return {"flops_per_image": step / len(batch), "prefix_flops_per_image": prefix_flops / len(batch),
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
    from .runner import method_context

    from .methods import get_method

    ctx = method_context(config, plan, family, fresh, retain)
    epochs = warmup_epochs + timed_epochs
    base = {"channels_last": channels_last, "compile": compile_model}
    # FLOPs first: one eager step on one batch, which also warms up what a first call initialises
    # (imports, kernels, allocator pools), so that the timed run's memory and epochs do not carry it.
    cache_prefix = config.unlearn.cache_prefix and not get_method(variant.method).exact
    try:
        flops = _count_flops(variant, original, config, plan, family, fresh, retain, seed=seed,
                             cache_prefix=cache_prefix)
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
    history = timing["history"]
    timed = history.epoch_seconds[warmup_epochs:]
    sec = statistics.median(timed)
    cached = bool(history.cache)
    if cached != (flops["prefix_flops_per_image"] > 0):  # the full set's cache was refused (memory budget)
        flops = _count_flops(variant, original, config, plan, family, fresh, retain, seed=seed, cache_prefix=cached)
    images_per_sec = len(retain) / sec if sec > 0 else None
    row: dict[str, Any] = {
        "model": variant.model, "method": variant.method, "prune_mode": variant.prune_mode, "status": "ok",
        "sec_per_epoch": sec, "images_per_sec": images_per_sec,
        "sec_ratio_vs_finetune": None, "peak_memory_mb": timing["peak_memory_mb"],
        "memory_ratio_vs_finetune": None, "memory_kind": timing["memory_kind"],
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
                  progress: bool = False, log=None, overwrite: bool = False) -> dict[str, Any]:
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
    config = resolve(preset=preset, overrides=base_overrides)  # validates sizes, rates, precision, ...
    dev = select_device(config.device)
    dataset, data_root = default_data(dataset, data_root)
    raw = load_dataset(dataset, data_root, allow_download=False)
    splits = class_splits(raw, forget_class, train_per_class, 1, seed, dev)
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
                    "matmul_size": matmul_size, "overrides": overrides or {}}
        run_folder.claim(out, "bench", identity, overwrite)
    machine = machine_info(dev)
    log(f"[bench] {machine['device_name']} ({machine['torch_threads']} threads), {dataset}: "
        f"{len(retain)} retain images, {warmup_epochs} warm-up + {timed_epochs} timed epochs")
    matmul = matmul_flops_per_sec(dev, matmul_size, matmul_repeats)
    log(f"[bench] fp32 matmul {matmul_size}: {matmul['flops_per_sec'] / 1e9:.1f} GFLOP/s")

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
                    preset=preset, overrides=_merge(base_overrides, {"unlearn": {"prune_mode": mode}}))
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
        io.write_json(out / BENCH_FILE, results)
        io.write_text(out / TABLE_FILE, results["markdown"])
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


def markdown(results: dict[str, Any]) -> str:
    m, s, mm = results["machine"], results["settings"], results["matmul"]
    kinds = sorted({r["memory_kind"] for r in results["rows"] if r.get("memory_kind")})
    lines = [
        "# Unlearning speed and memory",
        "",
        f"Machine: {m['device_name']} ({m['device']}), {m['torch_threads']} torch threads, "
        f"torch {m['torch']}, CPU {m['cpu']}.",
        f"fp32 matmul {mm['size']}x{mm['size']}: {mm['flops_per_sec'] / 1e9:.2f} GFLOP/s (median of {mm['repeats']}).",
        f"Data: {s['dataset']}, {s['retain_images']} retain images {tuple(s['image_shape'])}, batch {s['batch_size']}, "
        f"{s['precision']}; {s['warmup_epochs']} warm-up + {s['timed_epochs']} timed epochs (median). "
        f"channels_last {'on' if s['channels_last'] else 'off'}, compile {'on' if s['compile'] else 'off'}.",
        f"Peak memory: {', '.join(kinds) or 'n/a'} of prepare + fit. FLOPs: FlopCounterMode over one training "
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
def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _model_arg(text: str) -> tuple[str, str, Any]:
    import yaml

    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected MODEL.KEY=VALUE (e.g. vit.depth=6), got '{text}'")
    key, raw = text.split("=", 1)
    model, field = key.split(".", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return model.strip(), field.strip(), value


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the benchmark's options to `parser` (e.g. a CLI subcommand), or return a new parser."""
    if parser is None:
        parser = UserErrorParser(prog="python -m benchmarks.unlearn_speed",
                         description="Seconds per unlearning epoch, images/s, peak memory and FLOPs of each method.")
    g = parser.add_argument_group("benchmark")
    g.add_argument("--models", type=_names, default=list(DEFAULT_MODELS),
                   help="comma-separated registry names (default resnet18,vit)")
    g.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="MODEL.KEY=VALUE",
                   help="architecture argument over the cpu preset's (resnet18 width 8; vit depth 4, dim 64, "
                        "heads 2, mlp_dim 128), e.g. --model-arg vit.depth=6; repeatable")
    g.add_argument("--methods", type=_names, default=list(DEFAULT_METHODS),
                   help="comma-separated (default finetune,prune-finetune,lora,prunelora)")
    g.add_argument("--prune-modes", type=_names, default=list(PRUNE_MODES),
                   help="prune modes of prune-finetune and prunelora (default mask,remove)")
    g.add_argument("--dataset", help="digits | cifar10 | cifar100 (default cifar10 where a copy is at hand, else digits)")
    g.add_argument("--data-root", help="folder holding the dataset (default $PRUNELORA_DATA, else ../shared/data)")
    g.add_argument("--train-per-class", type=int,
                   help=f"class-balanced training subset per class (default the preset's; cpu: "
                        f"{DEFAULT_TRAIN_PER_CLASS})")
    g.add_argument("--preset", help="model sizes and subset: cpu (default, or $PRUNELORA_PRESET) | smoke | paper")
    g.add_argument("--forget-class", type=int, default=3, help="class left out of the retain set (default 3)")
    g.add_argument("--device", default="auto", help="auto (default) | cpu | cuda")
    g.add_argument("--epochs", type=int, default=3, help="timed epochs, median reported (default 3, at least 3)")
    g.add_argument("--warmup-epochs", type=int, default=1, help="untimed warm-up epochs (default 1)")
    g.add_argument("--batch-size", type=int, help="unlearning batch size (default the config's, 128)")
    g.add_argument("--precision", default="fp32", help="fp32 (default) | bf16 (CUDA autocast)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format for model and data")
    g.add_argument("--compile", action="store_true", help="torch.compile the prepared model (failures are reported)")
    g.add_argument("--threads", type=int, help="torch intra-op threads (default: the cores available to the process)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--matmul-size", type=int, default=2048, help="side of the fp32 matmul reference (default 2048)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="bench_set",
                   help="any RunConfig field by dotted name, e.g. --set unlearn.lora_dropout=0")
    g.add_argument("--out", default="runs/bench", help="output folder for bench.json and bench.md (default runs/bench)")
    g.add_argument("--overwrite", action="store_true", help="replace another run's results in --out (default: refuse)")
    g.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    return parser


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark for parsed options (raises UserError on user mistakes)."""
    from .config import parse_dotted

    model_args: dict[str, dict[str, Any]] = {}
    for model, field, value in args.model_arg:
        model_args.setdefault(model, {})[field] = value
    from .machine_load import set_threads

    set_threads(args.threads)
    return run_benchmark(
        args.models, args.methods, model_args=model_args, dataset=args.dataset, data_root=args.data_root,
        train_per_class=args.train_per_class, preset=args.preset, forget_class=args.forget_class, device=args.device,
        warmup_epochs=args.warmup_epochs, timed_epochs=args.epochs, prune_modes=args.prune_modes,
        batch_size=args.batch_size, precision=args.precision, channels_last=args.channels_last,
        compile_model=args.compile, seed=args.seed, matmul_size=args.matmul_size,
        overrides=parse_dotted(args.bench_set), out=args.out, progress=args.progress, overwrite=args.overwrite)


def report(results: dict[str, Any]) -> int:
    """Print the Markdown table and the files written; the exit status (0)."""
    print(results["markdown"])
    for path in results.get("files", []):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print the Markdown table; user mistakes print one line and return 2."""
    try:
        results = run_from_args(build_arg_parser().parse_args(argv))
    except UserError as exc:
        print(f"prunelora bench: error: {exc}", file=sys.stderr)
        return 2
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
