"""One method on a causal LM: the surgery, the objective through train.fit, and what it cost.

Shared by the commands (run.py) and the Python API (api.py). Cost: the seconds inside training steps
(fit's epoch clocks), steps taken, seconds per step, the tensor peak (the CPU's live tensor bytes while
training, metrics.tensor_memory; CUDA's max_memory_allocated on a GPU), trainable and total parameters.
With `--parallel fsdp` under torchrun the training runs fully sharded (shard.py); the tensor peak is then
this rank's on CUDA and not measured on the CPU.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config.causal_lm import LMConfig
from ..config.parsing import build
from ..data.text.tokens import IGNORE, TokenSet
from ..machine import synchronize
from ..methods.causal_lm import shard
from ..methods.causal_lm.names import LMMethod
from ..methods.causal_lm.surgery import Operated, operate
from ..metrics.tensor_memory import TensorPeak
from ..objectives.causal_lm import RetainFinetune, get_lm_objective, mean_nll
from ..objectives.causal_lm.base import LMRecipe
from ..train import OptimSettings, fit


def objective_args(config: LMConfig, m: LMMethod) -> LMRecipe:
    """The objective's own values: its defaults, then method_args.<objective>, then method_args.<method>."""
    cls = get_lm_objective(m.objective)
    values = {**(config.method_args.get(m.objective) or {}), **(config.method_args.get(m.name) or {})}
    return build(cls.Args, values, f"method_args.{m.name}")


def optim_settings(config: LMConfig, m: LMMethod) -> OptimSettings:
    u = config.unlearn
    return OptimSettings(optimizer="adamw", lr=u.lora_lr if "lora" in m.surgery else u.lr,
                         weight_decay=u.weight_decay, batch_size=u.batch_size)


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


def train_from_scratch(model: nn.Module, data: TokenSet, config: LMConfig, seed: int, desc: str,
                       progress: bool) -> dict[str, Any]:
    """Train until the answers are memorised (checked every 5 epochs) or pretrain.epochs have run."""
    p = config.pretrain
    settings = OptimSettings(optimizer="adamw", lr=p.lr, weight_decay=p.weight_decay, batch_size=p.batch_size,
                             schedule="cosine", warmup_epochs=min(5.0, p.epochs / 10))
    reached: dict[str, Any] = {"memorised": 0.0, "epochs": 0}

    def check(epoch: int, history) -> bool:
        if epoch % 5 and epoch != p.epochs:
            return False
        reached.update(memorised=memorised_share(model, data), epochs=epoch)
        return reached["memorised"] >= p.memorised

    history = fit(model, data, settings, p.epochs, seed=seed, objective=RetainFinetune(), on_epoch_end=check,
                  desc=desc, progress=progress)
    return {**reached, "seconds": history.seconds_until(len(history.epoch_seconds))}


def unlearn_with(m: LMMethod, original: nn.Module, retain: TokenSet, forget: TokenSet, config: LMConfig, seed: int,
                 progress: bool = True, fresh: Callable[[], nn.Module] | None = None
                 ) -> tuple[nn.Module, Operated | None, dict[str, Any]]:
    """(the model to measure, the Operated (None for Retrain), cost) of method `m` on `original` (untouched).
    Retrain needs `fresh`: the initialisation to train from.

    The steps are timed untouched; on a CPU the tensor peak is then measured over one more epoch of the same
    method from the same start (the meter sees every operator, which would slow the timed steps, unevenly:
    LoRA's extra small operators more)."""
    device = retain.input_ids.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    operated: Operated | None = None
    if m.objective is None:
        if fresh is None:
            raise ValueError("Retrain needs the initialisation to train from")
        model, meta, sharding = shard.trained(fresh().to(device), config.unlearn.parallel, lambda net: train_from_scratch(
            net, retain, config, seed, f"retrain seed {seed}", progress))
        steps = meta["epochs"] * -(-len(retain) // config.pretrain.batch_size)
        seconds = meta["seconds"]

        def one_epoch() -> None:
            fit(fresh().to(device), retain, OptimSettings(optimizer="adamw", lr=config.pretrain.lr,
                                                          batch_size=config.pretrain.batch_size), 1, seed=seed,
                objective=RetainFinetune(), progress=False)
    else:
        probe = forget.rows(torch.arange(min(64, len(forget)), device=device))
        torch.manual_seed(seed)  # PEFT draws the adapters' initialisation from torch's default generator: the
        # seed's, whichever stages ran before in this process, so a resumed run gives the uninterrupted run's numbers
        operated = operate(original, m.surgery, config.unlearn, lambda net: -mean_nll(net, probe))
        model = operated.model
        start_state = copy.deepcopy(model) if device.type == "cpu" and not shard.wanted(config.unlearn.parallel) \
            else None  # for the tensor peak's extra epoch
        objective = _objective(m, config, original, model)
        model, history, sharding = shard.trained(model, config.unlearn.parallel, lambda net: fit(
            net, retain, optim_settings(config, m), config.unlearn.epochs, seed=seed, objective=objective,
            forget=forget, desc=f"{m.name} seed {seed}", progress=progress))
        objective.finish()
        operated.model = model
        anchor = forget if objective.anchor == "forget" else retain
        steps = len(history.epoch_seconds) * -(-len(anchor) // config.unlearn.batch_size)
        seconds = history.seconds_until(len(history.epoch_seconds))

        def one_epoch() -> None:
            again = _objective(m, config, original, start_state)
            fit(start_state, retain, optim_settings(config, m), 1, seed=seed, objective=again, forget=forget,
                progress=False)
            again.finish()
    synchronize(device)
    wall = time.perf_counter() - start
    peak: float | None
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    elif shard.wanted(config.unlearn.parallel):
        peak = None  # the CPU meter follows tensors' storages, which FSDP resizes under it: not measured
    else:
        with TensorPeak("cpu") as meter:
            one_epoch()
        peak = meter.peak / 2 ** 20
    cost: dict[str, Any] = {
        "seconds": seconds, "wall_seconds": wall, "steps": steps, "sec_per_step": seconds / max(1, steps),
        "peak_memory_mb": peak, "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params": sum(p.numel() for p in (operated.merged() if operated else model).parameters())}
    cost.update(sharding)
    if operated is not None:
        cost["pruned"] = operated.kept
        cost["lora_targets"] = operated.lora_targets
    return model, operated, cost


def _objective(m: LMMethod, config: LMConfig, original: nn.Module, model: nn.Module):
    objective = get_lm_objective(m.objective)(objective_args(config, m), original=original)
    objective.prepare(model)
    return objective
