"""Run one method on one original model: surgery, the shared loop, deliverables at each budget.

Used by the pipeline, the CLI's `unlearn` and the Python API alike.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .data import ImageSet
from .methods import Method, MethodContext, Prepared, get_method, resolve_recipe
from .metrics.cost import MemoryMeter
from .models import LayerPlan
from .objectives import get_objective
from .train import PRETRAIN_HINT, History, fit


@dataclass
class Snapshot:
    """The deliverable model at one evaluation budget, with what it cost to get there."""

    epochs: int | None  # None for exact methods (Retrain), which run their own recipe
    model: nn.Module
    sec_per_epoch: float | None
    total_sec: float
    peak_memory_mb: float
    memory_kind: str
    rss_growth_mb: float | None = None  # CPU: resident-set growth, the second, allocator-bound figure


@dataclass
class MethodRun:
    method: str
    snapshots: list[Snapshot]
    trainable_params: int
    total_params: int
    prepared: Prepared
    history: History
    surgery_sec: float
    peak_memory_mb: float
    memory_kind: str
    info: dict[str, Any] = field(default_factory=dict)
    rss_growth_mb: float | None = None


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def reinitialized(model: nn.Module) -> nn.Module:
    """A copy with every layer's parameters reset: Retrain for a model outside the registry."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for param in fresh.parameters():
        param.requires_grad_(True)
    return fresh


def effective_plan(config: RunConfig, plan: LayerPlan) -> LayerPlan:
    """The model's layer plan with the config's unlearn.prune_layers / lora_layers overrides applied."""
    u = config.unlearn
    return dataclasses.replace(plan, prune_layers=u.prune_layers or plan.prune_layers,
                               lora_layers=u.lora_layers or plan.lora_layers)


def method_context(config: RunConfig, plan: LayerPlan, family: str, fresh_model, retain: ImageSet,
                   forget: ImageSet | None = None, forget_classes: list[int] | None = None) -> MethodContext:
    return MethodContext(plan=effective_plan(config, plan), unlearn=config.unlearn,
                         pretrain=resolve_recipe(config.pretrain, family), pretrain_epochs=config.pretrain.epochs,
                         fresh_model=fresh_model, retain=retain, forget=forget, forget_classes=forget_classes,
                         method_args=config.method_args)


def lr_hint(method: Method) -> str:
    """The setting that lowers a method's learning rate, for the error of a run that diverged."""
    if method.exact:  # Retrain runs the pre-training recipe
        return PRETRAIN_HINT
    own = f"--set method_args.{method.name}.lr=..."
    if get_objective(method.objective).Args().lr is None:  # the objective takes unlearn.lr
        return f"lower the learning rate (--lr, or {own})"
    return f"lower the learning rate ({own})"


def run_method(name: str, original: nn.Module, retain: ImageSet, ctx: MethodContext, *, seed: int,
               precision: str = "fp32", channels_last: bool = False, cache_prefix: bool = True,
               progress: bool = True,
               epochs: int | None = None, snapshots: bool = True,
               model_hook: Callable[[nn.Module], None] | None = None,
               on_epoch: Callable[[int, nn.Module], bool] | None = None,
               count_tensors: bool = True, desc: str | None = None) -> MethodRun:
    """Prepare the method, train it once for its longest budget, snapshot the deliverable at each budget.

    epochs overrides the length of the run; snapshots=False skips the deliverables (benchmarks);
    model_hook(model) runs after surgery, before training (memory format, torch.compile);
    on_epoch(epoch, model) runs after every epoch and may stop the run (True), whose deliverable
    is then snapshot at that epoch. A method that does not train (budget [0]) is snapshot once.
    count_tensors=False measures CPU memory as resident-set growth only (no per-op bookkeeping:
    the benchmark times epochs that way and measures the tensor peak in a run of its own); with it,
    the CPU tensor peak covers surgery, the prefix cache and the first epoch (whose allocations every
    later epoch repeats), so its bookkeeping slows the first epoch only.
    The objective draws from ctx.forget where it uses the forget set. desc names the run in the progress
    bar and in the error of a run that diverges ("resnet18 finetune"; default: the method's name).
    """
    method = get_method(name)
    device = retain.labels.device
    taken: list[Snapshot] = []
    with MemoryMeter(device, count_tensors=count_tensors) as meter:
        start = time.perf_counter()
        torch.manual_seed(seed)
        prepared = method.prepare(original, ctx)
        prepared.model.to(device)
        if model_hook is not None:
            model_hook(prepared.model)
        surgery_sec = time.perf_counter() - start
        budgets = sorted(set(prepared.epochs)) if snapshots else []

        def on_epoch_end(epoch: int, history: History) -> bool:
            meter.stop_counting_tensors()  # epoch 1 holds the peak: later epochs repeat its allocations
            stop = bool(on_epoch(epoch, prepared.model)) if on_epoch is not None else False
            if snapshots and (epoch in budgets or stop):
                take(epoch, history)
            return stop

        def take(epoch: int, history: History) -> None:
            taken.append(Snapshot(
                epochs=None if method.exact else epoch,
                model=prepared.deliver(prepared.model),
                sec_per_epoch=sum(history.epoch_seconds) / epoch,
                total_sec=surgery_sec + history.seconds_until(epoch),
                peak_memory_mb=meter.peak_mb(),
                memory_kind=meter.kind,
                rss_growth_mb=meter.rss_growth_mb(),
            ))

        if prepared.after_step is not None:
            prepared.after_step()
        length = epochs if epochs is not None else max(prepared.epochs)
        if length == 0:
            history = History()
            if snapshots:
                taken.append(Snapshot(None, prepared.deliver(prepared.model), None, surgery_sec, meter.peak_mb(),
                                      meter.kind, meter.rss_growth_mb()))
        else:
            history = fit(prepared.model, retain, prepared.optim, length, seed=seed,
                          after_step=prepared.after_step, on_epoch_end=on_epoch_end, precision=precision,
                          channels_last=channels_last,
                          cache_prefix=cache_prefix and not method.exact, desc=desc or name, progress=progress,
                          objective=prepared.objective, forget=ctx.forget, hint=lr_hint(method))
    info = dict(prepared.info)
    if history.cache:
        info["prefix_cache"] = history.cache
        info["prefix_cache_mb"] = history.cache["bytes"] / 2**20
        info["prefix_cache_sec"] = history.setup_seconds
    final = taken[-1].model if taken else prepared.model
    return MethodRun(name, taken, count_trainable(prepared.model), sum(p.numel() for p in final.parameters()),
                     prepared, history, surgery_sec, meter.final_mb, meter.kind, info, meter.final_rss_mb)
