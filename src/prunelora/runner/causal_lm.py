"""One method on a causal LM: the surgery, the objective through train.fit, and what it cost.

A method is the same Method as on the image task (methods/): its surgery (methods/causal_lm/surgery.py)
prepares the model, its objective (objectives/causal_lm/) says what one step optimises, and train.fit runs
it. Retrain trains the initialisation from scratch with the original's recipe until the answers are
memorised. Cost: the seconds inside training steps (fit's epoch clocks), steps taken, seconds per step, the
tensor peak (the CPU's live tensor bytes while training, metrics.tensor_memory; CUDA's max_memory_allocated
on a GPU), trainable and total parameters. With `--parallel fsdp` under torchrun the training runs fully
sharded (methods/causal_lm/shard.py); the tensor peak is then this rank's on CUDA and not measured on the CPU.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config.causal_lm import LMConfig
from ..data.text.tokens import IGNORE, TokenSet
from ..machine import synchronize
from ..methods import Method, Prepared
from ..methods.causal_lm import shard
from ..methods.causal_lm.surgery import LMContext
from ..metrics.tensor_memory import TensorPeak
from ..objectives.causal_lm import RetainFinetune, mean_nll
from ..objectives.causal_lm.base import LMObjective
from ..train import History, OptimSettings, fit, unmetered


@dataclass
class LMRun:
    """A method's run on a causal LM: the trained model (PEFT-wrapped for LoRA methods), how it was prepared
    (its deliverable and adapters), and what it cost."""

    model: nn.Module
    prepared: Prepared
    cost: dict[str, Any]

    def delivered(self) -> nn.Module:
        """The plain transformers model, adapters merged (a copy; the trained model is left as it is)."""
        return self.prepared.deliver(self.model)


def context(config: LMConfig, fresh: Callable[[], nn.Module] | None = None,
            forget_loss: Callable[[nn.Module], torch.Tensor] | None = None) -> LMContext:
    return LMContext(config.unlearn, config.pretrain, config.method_args, fresh, forget_loss)


def memorised_share(model: nn.Module, data: TokenSet, limit: int = 256) -> float:
    """The share of answer tokens the model predicts (teacher-forced, greedy) on up to `limit` examples."""
    was = model.training
    model.eval()
    with torch.no_grad():
        batch = data.rows(torch.arange(min(limit, len(data)), device=data.input_ids.device))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        keep = labels != IGNORE
        share = float((logits.argmax(-1)[keep] == labels[keep]).float().mean())
    model.train(was)
    return share


def pretrain_settings(config: LMConfig) -> OptimSettings:
    """The original's recipe (Retrain's): AdamW, cosine with a warm-up of a tenth of the epochs (at most 5)."""
    p = config.pretrain
    return OptimSettings(optimizer="adamw", lr=p.lr, weight_decay=p.weight_decay, batch_size=p.batch_size,
                         schedule="cosine", warmup_epochs=min(5.0, p.epochs / 10))


def train_from_scratch(model: nn.Module, data: TokenSet, config: LMConfig, seed: int, desc: str,
                       progress: bool, settings: OptimSettings | None = None) -> dict[str, Any]:
    """Train until the answers are memorised (checked every 5 epochs) or pretrain.epochs have run."""
    p = config.pretrain
    reached: dict[str, Any] = {"memorised": 0.0, "epochs": 0}

    def check(epoch: int, history: History) -> bool:
        if epoch % 5 and epoch != p.epochs:
            return False
        reached.update(memorised=memorised_share(model, data), epochs=epoch)
        return reached["memorised"] >= p.memorised

    history = fit(model, data, settings or pretrain_settings(config), p.epochs, seed=seed, objective=RetainFinetune(),
                  on_epoch_end=check, desc=desc, progress=progress)
    return {**reached, "seconds": history.seconds_until(len(history.epoch_seconds))}


def unlearn_with(method: Method, original: nn.Module, retain: TokenSet, forget: TokenSet, config: LMConfig, seed: int,
                 progress: bool = True, fresh: Callable[[], nn.Module] | None = None) -> LMRun:
    """Method `method` on `original` (left untouched). Retrain needs `fresh`: the initialisation to train from.

    The steps are timed untouched; on a CPU the tensor peak is then measured over one more epoch of the same
    method from the same start (the meter sees every operator, which would slow the timed steps, unevenly:
    LoRA's extra small operators more)."""
    device = retain.input_ids.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    probe = forget.rows(torch.arange(min(64, len(forget)), device=device)) if len(forget) else None
    ctx = context(config, fresh, (lambda net: -mean_nll(net, probe)) if probe is not None else None)
    torch.manual_seed(seed)  # PEFT draws the adapters' initialisation from torch's default generator: the
    # seed's, whichever stages ran before in this process, so a resumed run gives the uninterrupted run's numbers
    prepared = method.prepare(original, ctx)
    prepared.model = prepared.model.to(device)
    parallel = config.unlearn.parallel
    if method.exact:
        model, meta, sharding = shard.trained(prepared.model, parallel, lambda net: train_from_scratch(
            net, retain, config, seed, f"retrain seed {seed}", progress, prepared.optim))
        steps = meta["epochs"] * -(-len(retain) // prepared.optim.batch_size)
        seconds = meta["seconds"]
        spare: nn.Module | None = fresh().to(device) if fresh is not None and device.type == "cpu" else None
    else:
        spare = copy.deepcopy(prepared.model) if device.type == "cpu" and not shard.wanted(parallel) else None
        objective = _started(prepared)
        model, history, sharding = shard.trained(prepared.model, parallel, lambda net: fit(
            net, retain, prepared.optim, config.unlearn.epochs, seed=seed, objective=objective, forget=forget,
            desc=f"{method.name} seed {seed}", progress=progress))
        objective.finish()
        anchor = forget if objective.anchor == "forget" else retain
        steps = len(history.epoch_seconds) * -(-len(anchor) // prepared.optim.batch_size)
        seconds = history.seconds_until(len(history.epoch_seconds))
    prepared.model = model
    synchronize(device)
    wall = time.perf_counter() - start
    peak: float | None
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    elif shard.wanted(parallel) or spare is None:
        peak = None  # the CPU meter follows tensors' storages, which FSDP resizes under it: not measured
    else:
        with TensorPeak("cpu") as meter, unmetered():  # an epoch for the meter, not the method's cost
            _one_epoch(method, spare, original, retain, forget, config, seed, prepared.optim)
        peak = meter.peak / 2 ** 20
    run = LMRun(model, prepared, {})
    run.cost = {"seconds": seconds, "wall_seconds": wall, "steps": steps, "sec_per_step": seconds / max(1, steps),
                "peak_memory_mb": peak, "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "params": sum(p.numel() for p in run.delivered().parameters()), **sharding}
    if not method.exact:
        run.cost.update(pruned=prepared.info.get("pruned", {}), lora_targets=prepared.info.get("lora_targets", []))
    return run


def _started(prepared: Prepared) -> LMObjective:
    """The prepared objective, told which weights train (RMU restricts them) before fit builds its optimiser."""
    objective = prepared.objective
    objective.prepare(prepared.model)
    return objective


def _one_epoch(method: Method, model: nn.Module, original: nn.Module, retain: TokenSet, forget: TokenSet,
               config: LMConfig, seed: int, settings: OptimSettings) -> None:
    """One untimed epoch of the method from the same start, for the tensor peak."""
    if method.exact:
        fit(model, retain, settings, 1, seed=seed, objective=RetainFinetune(), progress=False)
        return
    again = method.objective_for(original, config.method_args)
    again.prepare(model)
    fit(model, retain, settings, 1, seed=seed, objective=again, forget=forget, progress=False)
    again.finish()
