"""What a method does to the model before its objective trains it: the surgery half of a method.

none: every weight trains. prune: structured L2 pruning, then every weight trains with the
structure kept. lora: PEFT adapters on the plan's layers (plus the head). prune+lora: prune first,
then adapt (PruneLoRA, the paper's method). reinit: a freshly initialised model trained with the
original's recipe (Retrain, the exact reference). Each returns a Prepared model without its
optimiser settings: those come from the objective (methods/base.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UserError
from ..registry import IMAGE, Registry
from .base import MethodContext, Prepared, working_copy
from .lora import attach_lora, merged_copy, unloaded_copy
from .pruning import (
    ChannelMasks,
    bind_lora_masks,
    l2_channel_masks,
    recalibrate_batchnorm,
    removal_reason,
    remove_channels,
    saliency_channel_masks,
)
from .reinflate import Removed


def prune(model: nn.Module, ctx: MethodContext, regrows: bool = False
          ) -> tuple[ChannelMasks | None, dict, Removed | None]:
    """Prune in place as the config says, then recalibrate batch norms on the retain set.

    Mask mode returns the masks that keep the structure; remove mode the original indices taken out
    of each layer (methods/reinflate.py writes the model back in its original shapes); auto, the
    default, removes where that write-back is exact and masks elsewhere (the ViT's residual
    projections, group norms), and where the method `regrows` pruned channels (PruneLoRA's dense
    LoRA update, the paper's): removed channels cannot grow back, so removing would train another
    network (measured: it forgets less in the same epochs). The recalibration matters: pruning half of every conv leaves each
    batch norm's running statistics describing the unpruned network, and at a few hundred unlearning
    steps they have not caught up (measured on digits, ResNet-18 w8: Prune+Finetune's retain accuracy
    after 1 epoch 15.7 % without, 95.0 % with). It runs in batches of the unlearning batch size: the
    statistics training computes, within the memory training needs (at 512 images a batch it was the
    stage's peak: 62 MB against the pruned ResNet's 40 MB epoch).
    """
    cfg = ctx.unlearn
    forget = ctx.forget if cfg.prune_score == "saliency" else None
    if cfg.prune_score == "saliency" and forget is None:
        raise UserError("prune score 'saliency' ranks channels by the forget set's loss: this run has no forget "
                        "set to rank them by (use --prune-score l2)")
    mode, why_masked = cfg.prune_mode, None
    if mode == "auto":  # remove where that trains what masks train and the write-back is exact, else masks
        why_masked = REGROWS if regrows else removal_reason(model, ctx.plan.prune_layers, cfg.prune_amount,
                                                            ctx.plan.head, ctx.example_input)
        mode = "mask" if why_masked else "remove"
    if mode == "remove":
        counts, removed = remove_channels(model, ctx.plan.prune_layers, cfg.prune_amount, ctx.plan.head,
                                          ctx.example_input, forget, cfg.batch_size)
        info = {"prune_mode": "remove", **counts}
        masks = None
    elif forget is not None:
        masks = saliency_channel_masks(model, ctx.plan.prune_layers, cfg.prune_amount, forget, cfg.batch_size)
        info = {"prune_mode": "mask", "pruned_channels": masks.pruned_channels()}
        removed = None
    else:
        masks = l2_channel_masks(model, ctx.plan.prune_layers, cfg.prune_amount)
        info = {"prune_mode": "mask", "pruned_channels": masks.pruned_channels()}
        removed = None
    if cfg.prune_mode == "auto":
        info["prune_mode_chosen_by"] = "auto" + (f": masks, as removing is not exact here ({why_masked})"
                                                 if why_masked else ": remove, exact for this architecture")
    recalibrate_batchnorm(model, ctx.retain, cfg.batch_size)
    return masks, info, removed


REGROWS = ("the dense LoRA update regrows pruned channels, which removed ones cannot; --keep-sparsity or "
           "--prune-mode remove trains the smaller network")


def with_adapters(model: nn.Module, ctx: MethodContext) -> nn.Module:
    cfg = ctx.unlearn
    return attach_lora(model, ctx.plan, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_dropout_on)


def adapter_prepared(peft_model: nn.Module, ctx: MethodContext, **kwargs) -> Prepared:
    """A PEFT model ready to train: merged into one model at delivery, its adapters saved beside it."""
    def save_adapters(directory: Path) -> None:
        peft_model.save_pretrained(str(directory))

    return Prepared(model=peft_model, epochs=ctx.unlearn.epochs, deliver=merged_copy, save_adapters=save_adapters,
                    adapter_base=lambda: unloaded_copy(peft_model), **kwargs)


def untouched(original: nn.Module, ctx: MethodContext) -> Prepared:
    return Prepared(model=working_copy(original, True), epochs=ctx.unlearn.epochs)


def pruned(original: nn.Module, ctx: MethodContext) -> Prepared:
    model = working_copy(original, True)
    masks, info, removed = prune(model, ctx)
    return Prepared(model=model, epochs=ctx.unlearn.epochs, after_step=masks.apply if masks else None, info=info,
                    removed=removed)


def adapted(original: nn.Module, ctx: MethodContext) -> Prepared:
    return adapter_prepared(with_adapters(working_copy(original, False), ctx), ctx)


def pruned_adapted(original: nn.Module, ctx: MethodContext) -> Prepared:
    """Prune first, then adapt. As in the paper's code the LoRA update B A is dense, so merging it
    re-grows pruned channels of mask mode; with keep_sparsity the rows of each lora_B are masked
    too, and the merged model keeps exactly the pruned structure. In remove mode the channels are
    gone and nothing can re-grow."""
    model = working_copy(original, False)
    masks, info, removed = prune(model, ctx, regrows=not ctx.unlearn.keep_sparsity)
    peft_model = with_adapters(model, ctx)
    after_step = None
    if masks is not None and ctx.unlearn.keep_sparsity:
        bind_lora_masks(peft_model, masks)
        after_step = masks.apply
    info["keep_sparsity"] = bool(ctx.unlearn.keep_sparsity)
    return adapter_prepared(peft_model, ctx, after_step=after_step, info=info, removed=removed)


def reinitialized(original: nn.Module, ctx: MethodContext) -> Prepared:
    """Retrain: a fresh model with the original's own recipe and epochs (not the unlearning budgets)."""
    return Prepared(model=ctx.fresh_model(), optim=ctx.pretrain, epochs=[ctx.pretrain_epochs])


@dataclass(frozen=True)
class Surgery:
    """What a surgery is: its name, its label in grid points, what it does to the model and what then trains.

    `apply(original, ctx)` returns a Prepared model; ctx is the task's context (the image task's MethodContext,
    the causal-LM task's LMContext)."""

    name: str
    label: str  # in grid-point labels: "SalUn@PruneLoRA"
    apply: Callable[[nn.Module, Any], Prepared]
    prunes: bool = False  # structured pruning (image: plan.prune_layers; causal LM: MLP neurons or heads)
    adapts: bool = False  # LoRA adapters (image: plan.lora_layers, + plan.train_modules trained in full)
    trains_all: bool = False  # every parameter trains
    reinitializes: bool = False  # starts from a fresh model
    space: tuple[tuple[str, tuple], ...] = ()  # unlearn.* settings `prunelora search` may try, as Objective.space


SURGERIES: Registry[Surgery] = Registry("surgery")
PRUNE_SPACE = (("prune_amount", ("float", 0.2, 0.8)), ("prune_score", ("choice", "l2", "saliency")))
LORA_SPACE = (("lora_r", ("choice", 4, 8, 16, 32)),)


def register_surgery(surgery: Surgery, *, task: str = IMAGE) -> Surgery:
    """Register a surgery for `task` (one line; the grid OBJECTIVE@SURGERY then offers it)."""
    return SURGERIES.register(surgery, task=task)


def get_surgery(name: str, task: str = IMAGE) -> Surgery:
    return SURGERIES.get(name, task)


for _surgery in (
    Surgery("none", "FT", untouched, trains_all=True),
    Surgery("prune", "Prune", pruned, prunes=True, trains_all=True, space=PRUNE_SPACE),
    Surgery("lora", "LoRA", adapted, adapts=True, space=LORA_SPACE),
    Surgery("prune+lora", "PruneLoRA", pruned_adapted, prunes=True, adapts=True, space=PRUNE_SPACE + LORA_SPACE),
    Surgery("reinit", "Retrain", reinitialized, trains_all=True, reinitializes=True),
):
    register_surgery(_surgery, task=IMAGE)
