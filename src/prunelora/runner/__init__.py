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

from .. import train as train_module
from ..config import RunConfig
from ..data import ImageSet
from ..data.batches import crop_rule
from ..machine import LoadGovernor
from ..methods import LogitMask, Method, MethodContext, Prepared, get_method, objective_args, resolve_recipe
from ..methods.base import recipe_settings
from ..metrics.cost import MemoryMeter
from ..models import LayerPlan
from ..objectives import get_objective
from ..train import PRETRAIN_HINT, History, OptimSettings, fit, unmetered


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


def pretrain_settings(config: RunConfig, family: str, flip: bool = True) -> OptimSettings:
    """The original's recipe (Retrain's) for the model family, mirroring images only where flip allows."""
    return dataclasses.replace(resolve_recipe(config.pretrain, family), flip=flip)


def method_context(config: RunConfig, plan: LayerPlan, family: str, fresh_model, retain: ImageSet,
                   forget: ImageSet | None = None, forget_classes: list[int] | None = None,
                   flip: bool = True) -> MethodContext:
    """flip: whether augmentation may mirror the images (the dataset's: digits no, CIFAR yes)."""
    return MethodContext(plan=effective_plan(config, plan), unlearn=config.unlearn,
                         pretrain=pretrain_settings(config, family, flip), pretrain_epochs=config.pretrain.epochs,
                         fresh_model=fresh_model, retain=retain, forget=forget, forget_classes=forget_classes,
                         method_args=config.method_args, flip=flip)


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

    An objective whose schedule spans the run (schedule_spans_budget: l1-sparse's decaying weight) trains
    one run per budget instead, each from the same start and seed, and each budget's snapshot is its own
    run's final model, with its own run's time; the MethodRun's history then holds the runs' epochs one
    after another (their total is the training time). A run stopped by on_epoch ends the sequence.
    epochs overrides the length of the run (one run, whatever the objective); snapshots=False skips the
    deliverables (benchmarks);
    model_hook(model) runs after surgery, before training (memory format, torch.compile);
    on_epoch(epoch, model) runs after every epoch and may stop the run (True), whose deliverable
    is then snapshot at that epoch. A method that does not train (budget [0]) is snapshot once.
    Memory: on CUDA the run's own max allocated. On the CPU the peak of live tensor bytes needs a dispatch
    mode that sees every operator, which slowed the epochs it watched (1.8x on the width-8 ResNet) and, where
    another mode sat above it, every later one: so with count_tensors it watches a run of its own first
    (tensor_peak_run: surgery, the prefix cache and one epoch, whose allocations every later epoch repeats),
    untimed and discarded, and no timed epoch runs under it. count_tensors=False: resident-set growth only.
    Without --threads, the torch threads follow the cores other processes leave free, read before the run
    and between epochs (machine.LoadGovernor).
    The objective draws from ctx.forget where it uses the forget set. desc names the run in the progress
    bar and in the error of a run that diverges ("resnet18 finetune"; default: the method's name).
    """
    method = get_method(name)
    device = retain.labels.device
    taken: list[Snapshot] = []
    histories: list[History] = []
    governor = LoadGovernor().start() if device.type == "cpu" else None
    tensor_peak = None
    if count_tensors and device.type != "cuda":
        tensor_peak = tensor_peak_run(name, original, retain, ctx, seed=seed, precision=precision,
                                      channels_last=channels_last, cache_prefix=cache_prefix, model_hook=model_hook)
    with MemoryMeter(device, count_tensors=False) as meter:

        def peak_mb() -> float:
            return tensor_peak if tensor_peak is not None else meter.peak_mb()

        kind = "cpu_tensor_peak" if tensor_peak is not None else meter.kind

        def prepare() -> tuple[Prepared, float]:
            start = time.perf_counter()
            torch.manual_seed(seed)
            prepared = method.prepare(original, ctx)
            prepared.model.to(device)
            if model_hook is not None:
                model_hook(prepared.model)
            return prepared, time.perf_counter() - start

        def train(prepared: Prepared, surgery_sec: float, length: int, budgets: list[int]) -> bool:
            """One run of `length` epochs, snapshot at `budgets`; whether on_epoch stopped it."""
            stopped = False

            def on_epoch_end(epoch: int, history: History) -> bool:
                nonlocal stopped
                stopped = bool(on_epoch(epoch, prepared.model)) if on_epoch is not None else False
                if snapshots and (epoch in budgets or stopped):
                    taken.append(Snapshot(
                        epochs=None if method.exact else epoch,
                        model=prepared.deliver(prepared.model),
                        sec_per_epoch=sum(history.epoch_seconds) / epoch,
                        total_sec=surgery_sec + history.seconds_until(epoch),
                        peak_memory_mb=peak_mb(),
                        memory_kind=kind,
                        rss_growth_mb=meter.rss_growth_mb(),
                    ))
                if governor is not None:
                    governor.epoch_end()
                return stopped

            if prepared.after_step is not None:
                prepared.after_step()
            if length == 0:
                histories.append(History())
                if snapshots:
                    taken.append(Snapshot(None, prepared.deliver(prepared.model), None, surgery_sec,
                                          peak_mb(), kind, meter.rss_growth_mb()))
                return False
            histories.append(fit(
                prepared.model, retain, prepared.optim, length, seed=seed, after_step=prepared.after_step,
                on_epoch_end=on_epoch_end, precision=precision, channels_last=channels_last,
                cache_prefix=cache_prefix and not method.exact, desc=desc or name, progress=progress,
                objective=prepared.objective, forget=ctx.forget, hint=lr_hint(method)))
            return stopped

        prepared, surgery_sec = prepare()
        budgets = sorted(set(prepared.epochs)) if snapshots else []
        if epochs is None and snapshots and budget_runs(method):
            for i, budget in enumerate(budgets):  # each budget its own run, from the same start and seed
                if i > 0:
                    prepared, surgery_sec = prepare()
                if train(prepared, surgery_sec, budget, [budget]):
                    break
        else:
            train(prepared, surgery_sec, epochs if epochs is not None else max(prepared.epochs), budgets)
    history = histories[0] if len(histories) == 1 else History(
        epoch_seconds=[s for h in histories for s in h.epoch_seconds],
        epoch_loss=[v for h in histories for v in h.epoch_loss],
        setup_seconds=sum(h.setup_seconds for h in histories), cache=histories[-1].cache)
    info = dict(prepared.info)
    if history.cache:
        info["prefix_cache"] = history.cache
        info["prefix_cache_mb"] = history.cache["bytes"] / 2**20
        info["prefix_cache_sec"] = history.setup_seconds
    if governor is not None and governor.changes:
        info["threads_changed_to"] = list(governor.changes)
    final = taken[-1].model if taken else prepared.model
    final_peak = tensor_peak if tensor_peak is not None else meter.final_mb
    return MethodRun(name, taken, count_trainable(prepared.model), sum(p.numel() for p in final.parameters()),
                     prepared, history, surgery_sec, final_peak, kind, info, meter.final_rss_mb)


def tensor_peak_run(name: str, original: nn.Module, retain: ImageSet, ctx: MethodContext, *, seed: int,
                    precision: str = "fp32", channels_last: bool = False, cache_prefix: bool = True,
                    model_hook: Callable[[nn.Module], None] | None = None) -> float:
    """The CPU's peak of live tensor bytes (MB) of the method's surgery, prefix cache and first epoch, in a run of
    its own under the tensor meter (metrics/tensor_memory.py), untimed and discarded: every later epoch repeats
    the first one's allocations. Run with the same seed as the timed run, it changes nothing that run draws."""
    method = get_method(name)
    device = retain.labels.device
    with MemoryMeter(device, count_tensors=True) as meter, unmetered():  # not the method's cost
        torch.manual_seed(seed)
        prepared = method.prepare(original, ctx)
        prepared.model.to(device)
        if model_hook is not None:
            model_hook(prepared.model)
        if prepared.after_step is not None:
            prepared.after_step()
        if max(prepared.epochs) > 0:  # train.fit, not this module's: a measurement, not one of the run's trainings
            train_module.fit(prepared.model, retain, prepared.optim, 1, seed=seed, after_step=prepared.after_step,
                             precision=precision, channels_last=channels_last,
                             cache_prefix=cache_prefix and not method.exact, desc=name, progress=False,
                             objective=prepared.objective, forget=ctx.forget, hint=lr_hint(method))
    return meter.final_mb


def budget_runs(method: Method) -> bool:
    """Whether each evaluation budget is a run of its own (an objective whose schedule spans the run)."""
    return not method.exact and get_objective(method.objective).schedule_spans_budget


def resolved_settings(config: RunConfig, method_name: str, family: str, flip: bool = True,
                      side: int | None = None) -> dict[str, Any]:
    """A method's settings as they run (results.json's method_settings, the report), JSON-able.

    Built by the functions that build the run's own (objective_args, recipe_settings, pretrain_settings,
    the objective's hooks), never from a copy of their defaults. family picks Retrain's recipe; flip is the
    dataset's (may augmentation mirror the images); side, the image side, turns the crop rule into pixels.
    """
    method = get_method(method_name)
    kind = get_objective(method.objective)
    objective = kind(objective_args(kind, method.name, config.method_args))
    out: dict[str, Any] = {"surgery": method.surgery, "objective": method.objective}
    if isinstance(method, LogitMask):  # no optimiser, no data: the classes' logits are masked
        return {**out, "trains": False}
    if method.exact:
        settings, budgets = pretrain_settings(config, family, flip), [config.pretrain.epochs]
    else:
        settings, budgets = recipe_settings(objective.args, config.unlearn, flip), sorted(set(config.unlearn.epochs))
    sgd = settings.optimizer.lower() == "sgd"
    schedule: dict[str, Any] = {"kind": settings.schedule}
    if settings.schedule != "constant":
        schedule["warmup_epochs"] = settings.warmup_epochs
    factors = [objective.lr_factor(epoch) for epoch in range(1, max(budgets) + 1)]
    if any(f != 1.0 for f in factors):
        schedule["lr_by_epoch"] = [float(f"{settings.lr * f:.6g}") for f in factors]
    augmentation: dict[str, Any] = {"on": settings.augment}
    if settings.augment:
        augmentation.update(crop=crop_rule(side), flip=settings.flip, seeded=True)  # the run's generator
    return {
        **out, "trains": True,
        "optimizer": settings.optimizer, "lr": settings.lr,
        "momentum": settings.momentum if sgd else None, "nesterov": settings.nesterov if sgd else None,
        "weight_decay": settings.weight_decay,
        "batch_sizes": objective.batch_sizes(settings.batch_size),
        "augmentation": augmentation, "schedule": schedule,
        "epochs": budgets, "run_per_budget": budget_runs(method),
        "objective_settings": objective.own_settings(),
    }
