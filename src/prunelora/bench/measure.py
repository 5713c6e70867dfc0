"""One measured variant (a method on a model, in one prune mode): its timing, memory and FLOPs, through the
project's own run_method (never a second training loop); then the ratios to finetune and the MFU cap."""
from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..methods import get_method
from ..prefix_cache import PrefixCache, flat_stages, split_point
from ..runner import method_context, run_method, tensor_peak_run
from .columns import COLUMNS
from .flops import flop_counter


def prunes(method: str) -> bool:
    """Whether the method prunes (it is then measured in every prune mode)."""
    return get_method(method).prunes


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
    max allocated, or the CPU's live tensor bytes (runner.tensor_peak_run, the meter's own untimed run)."""
    hook = lambda model: _layout(model, channels_last)  # noqa: E731
    if retain.labels.device.type != "cuda":
        peak = tensor_peak_run(variant.method, original, retain, ctx, seed=seed, precision=config.precision,
                               cache_prefix=config.unlearn.cache_prefix, model_hook=hook)
        return peak, "cpu_tensor_peak"
    run = run_method(variant.method, original, retain, ctx, seed=seed, precision=config.precision,
                     cache_prefix=config.unlearn.cache_prefix, progress=False, epochs=1, snapshots=False,
                     model_hook=hook)
    return run.peak_memory_mb, run.memory_kind


def _count_flops(variant: Variant, original: nn.Module, config, ctx, retain, *, seed: int,
                 cache_prefix: bool) -> dict[str, float]:
    """FLOPs per image of one training step (suffix only where the prefix is cached) and of the prefix.

    run_method on one batch for one epoch: the counter opens after surgery (pruning's own forward
    passes are not training) and the prefix pass is counted apart.
    """
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
