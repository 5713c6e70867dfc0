"""The one training loop. Every method (and pre-training) runs through fit().

Methods differ only in the model they hand over (which parameters require grad), the optimiser
settings, an optional constraint applied after each step, and the data. fit() owns the epochs,
timing, the progress bar and the callbacks at evaluation budgets.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .data import ImageSet
from .errors import UserError
from .machine import synchronize
from .objectives import Feed, Objective, Progress, RetainLoss
from .prefix_cache import PrefixCache
from .sync_batchnorm import synchronized

# What to lower when a run diverges (fit's hint): any run, pre-training (the original, Retrain), relearn time.
LR_HINT = "lower the learning rate"
PRETRAIN_HINT = "lower the pre-training learning rate (--set pretrain.lr=...)"
RELEARN_HINT = "lower the relearning rate (--set evidence.relearn_lr=...)"


class Diverged(UserError):
    """Training reached a non-finite loss or non-finite weights: the stage stops instead of evaluating NaN."""


@dataclass
class SampleCap:
    """A budget of training samples shared by every fit() inside `capped(...)` (a search trial's share)."""

    limit: int
    used: int = 0


class BudgetReached(Exception):
    """The next step would train past the SampleCap: training stops before it (nothing beyond the cap is spent)."""


_CAP: ContextVar[SampleCap | None] = ContextVar("prunelora_sample_cap", default=None)
_WATCH: ContextVar[Callable[[int, nn.Module], None] | None] = ContextVar("prunelora_epoch_watch", default=None)


@contextlib.contextmanager
def unmetered():
    """A fit() that is not the method's training (a metering epoch, the evidence's finetuning) inside a capped
    or watched block: neither counted against the cap nor reported to the watch."""
    cap, watch = _CAP.set(None), _WATCH.set(None)
    try:
        yield
    finally:
        _CAP.reset(cap)
        _WATCH.reset(watch)


@contextlib.contextmanager
def watched(hook: Callable[[int, nn.Module], None]):
    """Every fit() inside the block calls hook(epoch, model) after each epoch (a search's per-epoch evidence: the
    hook may raise to stop a hopeless trial)."""
    token = _WATCH.set(hook)
    try:
        yield
    finally:
        _WATCH.reset(token)


@contextlib.contextmanager
def capped(limit: int):
    """Every fit() inside the block trains on at most `limit` samples in all; past it BudgetReached is raised."""
    cap = SampleCap(int(limit))
    token = _CAP.set(cap)
    try:
        yield cap
    finally:
        _CAP.reset(token)


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether no tensor holds NaN or inf: one device sync however many there are."""
    if not tensors:
        return True
    device = tensors[0].device
    parts = [distributed.local(t.detach()) for t in tensors]  # FSDP: this rank's shard, agreed below
    return distributed.everywhere(bool(torch.stack([torch.isfinite(t).all().to(device) for t in parts]).all()),
                                  tensors)


def divergence(loss: torch.Tensor, params: list[nn.Parameter]) -> str | None:
    """What diverged: "loss" (NaN), "weights" (a trainable one NaN or infinite), or None (checked once an epoch).
    A loss of +inf with finite weights is not divergence: a label the model gives probability 0 (a masked
    class, whose relearning is measured on logit-mask) trains on with finite gradients."""
    loss_ok = bool(~torch.isnan(loss))
    weights_ok = all_finite(list(params))
    if loss_ok and weights_ok:
        return None
    return "loss" if not loss_ok else "weights"


@dataclass
class OptimSettings:
    optimizer: str = "adam"  # sgd | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    augment: bool = False  # random crop (padding side // 8) and, with flip, horizontal flip; on the device, seeded
    schedule: str = "constant"  # constant | cosine (per step, with linear warm-up)
    warmup_epochs: float = 0.0
    nesterov: bool = False  # SGD: no reference (pre-training or unlearning) uses Nesterov momentum
    flip: bool = True  # augmentation's horizontal flip; off for images whose mirror is another class (digits)


@dataclass
class History:
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    setup_seconds: float = 0.0  # e.g. computing the cached prefix once
    cache: dict = field(default_factory=dict)
    samples: int = 0  # rows of every optimiser step: the cost of training in a unit no machine's load changes

    def seconds_until(self, epoch: int) -> float:
        return self.setup_seconds + sum(self.epoch_seconds[:epoch])


def make_optimizer(settings: OptimSettings, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("no parameter requires grad: nothing to train")
    name = settings.optimizer.lower()
    if name == "sgd":
        if settings.nesterov and settings.momentum <= 0:
            raise UserError("Nesterov momentum needs a momentum above 0 (set momentum, or nesterov=false)")
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay, nesterov=settings.nesterov)
    if name == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer '{settings.optimizer}' (choose sgd, adam or adamw)")


def lr_factor(settings: OptimSettings, step: int, total: int, steps_per_epoch: int) -> float:
    if settings.schedule == "constant":
        return 1.0
    warmup = int(settings.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    """The learning rate of the next step: each group's base times the schedule's factor."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


def autocast(device: torch.device, precision: str):
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit(model: nn.Module, data: ImageSet, settings: OptimSettings, epochs: int, *, seed: int,
        after_step: Callable[[], None] | None = None,
        on_epoch_end: Callable[[int, History], bool | None] | None = None,
        cache_prefix: bool = False, precision: str = "fp32", channels_last: bool = False, desc: str = "train",
        progress: bool = True, objective: Objective | None = None, forget: ImageSet | None = None,
        hint: str = LR_HINT) -> History:
    """Train the parameters of `model` that require grad for `epochs` epochs.

    data is the retain set (everything, for pre-training); objective says what each step optimises
    and on which sets (default: cross-entropy on data); forget is the forget set, for objectives
    that use it. The learning rate of each step is the settings' schedule (per step) times the
    objective's factor for the epoch (SCRUB's step decay; 1 for the others). on_epoch_end(epoch,
    history) runs after each epoch, outside the timed region (evaluation at budgets); when it
    returns True, training stops there (forgetting verified early). With cache_prefix, a frozen,
    deterministic prefix of the network is run once per set and training continues on its cached
    output (exact: same batches, same weights up to float error).
    A NaN epoch loss or a non-finite trainable weight raises Diverged naming `desc`, the epoch and `hint`
    (the setting to lower), checked once per epoch before on_epoch_end (never a NaN model evaluated or saved).
    """
    objective = objective or RetainLoss()
    if objective.uses_forget and (forget is None or len(forget) == 0):
        raise ValueError(f"objective '{objective.name}' needs a non-empty forget set")
    device = data.labels.device
    if channels_last:  # convolutions then run channels-last whatever the input's layout
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if not all_finite(list(model.parameters())):  # not the run's doing: say so, not "diverged"
        raise UserError(f"{desc}: the model's weights hold NaN or infinite values before training (check the "
                        "checkpoint or the weights given)")
    optimizer = make_optimizer(settings, params)
    generator = torch.Generator().manual_seed(seed)
    feed = Feed({"retain": data, "forget": forget if objective.uses_forget else None}, settings.batch_size,
                settings.augment, generator, flip=settings.flip)
    history = History()
    synchronize(device)
    start = time.perf_counter()
    objective.data(feed, model)
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if cache_prefix and not settings.augment:
        caches = [PrefixCache.build(model, feed.sets[name]) for name in objective.draws_from()]
        if caches and all(c is not None for c in caches):  # one forward for every set, or none cached
            feed.features = {name: c.features for name, c in zip(objective.draws_from(), caches)}
            forward = caches[0].suffix
            history.cache = caches[0].describe()
            history.cache["bytes"] = sum(c.features.numel() * c.features.element_size() for c in caches)
    objective.start(model, feed)
    synchronize(device)
    history.setup_seconds = time.perf_counter() - start
    steps_per_epoch = max(1, objective.steps_per_epoch(feed))
    total_steps = steps_per_epoch * epochs
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    step = 0
    model.train()

    bar = tqdm(range(1, epochs + 1), desc=desc, leave=False, disable=not progress or not distributed.is_main(),
               unit="epoch")
    forward = distributed.sharded_forward(forward)  # under torchrun: layers see which rows of the global batch
    with synchronized(model):  # under torchrun: batch norm of the global batch
        for epoch in bar:
            synchronize(device)
            start = time.perf_counter()
            total_loss = torch.zeros((), device=device)
            seen = 0
            epoch_factor = objective.lr_factor(epoch)  # the objective's own per-epoch decay (SCRUB's), else 1
            for loss_value, samples in objective.steps(forward, feed, Progress(epoch, epochs)):
                cap = _CAP.get()
                if cap is not None:
                    if cap.used + samples > cap.limit:
                        bar.close()
                        raise BudgetReached(f"{desc}: the sample budget of {cap.limit} is spent")
                    cap.used += samples
                history.samples += samples
                optimizer.zero_grad(set_to_none=True)
                weight = distributed.shard_weight(samples) if distributed.active() else 1.0
                (loss_value * weight if weight != 1.0 else loss_value).backward()
                distributed.average_gradients(params)  # under torchrun: the global batch's gradient
                set_lr(optimizer, base_lrs, lr_factor(settings, step, total_steps, steps_per_epoch) * epoch_factor)
                optimizer.step()
                step += 1
                if after_step is not None:
                    after_step()
                objective.after_step()
                total_loss += loss_value.detach() * samples
                seen += samples
            synchronize(device)
            history.epoch_seconds.append(time.perf_counter() - start)
            what = divergence(total_loss, params)
            if what is not None:
                bar.close()
                raise Diverged(f"{desc} diverged in epoch {epoch} (non-finite {what}): {hint}")
            history.epoch_loss.append(float(total_loss) / max(1, seen))
            bar.set_postfix(loss=f"{history.epoch_loss[-1]:.3f}")
            watch = _WATCH.get()
            if watch is not None:
                watch(epoch, model)
                model.train()
            if on_epoch_end is not None:
                stop = on_epoch_end(epoch, history)
                model.train()
                if stop:
                    break
    return history
