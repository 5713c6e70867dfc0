"""Prune + Finetune (Liu et al. 2024): structured L2 pruning, then finetune with the structure kept."""
from __future__ import annotations

from torch import nn

from .base import Method, MethodContext, Prepared, unlearn_optim, working_copy
from .pruning import ChannelMasks, l2_channel_masks, recalibrate_batchnorm, remove_channels


def prune(model: nn.Module, ctx: MethodContext) -> tuple[ChannelMasks | None, dict]:
    """Prune in place as the config says, then recalibrate batch norms on the retain set.

    Mask mode returns the masks that keep the structure. The recalibration matters: pruning half
    of every conv leaves each batch norm's running statistics describing the unpruned network, and
    at a few hundred unlearning steps they have not caught up (measured on digits, ResNet-18 w8:
    Prune+Finetune's retain accuracy after 1 epoch 15.7 % without, 95.0 % with).
    """
    cfg = ctx.unlearn
    if cfg.prune_mode == "remove":
        info = remove_channels(model, ctx.plan.prune_layers, cfg.prune_amount, ctx.plan.head, ctx.example_input)
        info = {"prune_mode": "remove", **info}
        masks = None
    else:
        masks = l2_channel_masks(model, ctx.plan.prune_layers, cfg.prune_amount)
        info = {"prune_mode": "mask", "pruned_channels": masks.pruned_channels()}
    recalibrate_batchnorm(model, ctx.retain)
    return masks, info


class PruneFinetune(Method):
    name = "prune-finetune"
    prunes, adapts, trains_all = True, False, True

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        model = working_copy(original, True)
        masks, info = prune(model, ctx)
        return Prepared(model=model, optim=unlearn_optim(ctx.unlearn), epochs=ctx.unlearn.epochs,
                        after_step=masks.apply if masks else None, info=info)
