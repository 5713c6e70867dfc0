"""Layer plans inferred from a model's structure (the order its layers run in), never from its names.

One forward pass on two example images records the order in which every Conv2d and Linear runs.
- The classifier head is the last Linear to run.
- A transformer shows, before the head, the last block's attention output projection (H -> H)
  followed by its MLP (H -> M -> H), with the attention's q/k/v (or fused qkv) reading H just
  before. Whatever the layers are called (`attention.output.dense`, `attn.proj`, `o_proj`,
  `out_proj`, ...), the plan is then the paper's ViT plan: prune the attention output and the MLP
  output of the last block, LoRA on the attention output and the head. The patch embedding is
  never part of it.
- A convolutional network prunes its convolutions (depthwise ones excepted) and the expansion
  Linears of its blocks (ConvNeXt's pwconv1), adapts the convolutions of its blocks (kernel > 1,
  the stem excepted) and its block Linears, and trains its head.
Anything else is a clear error that asks for an explicit LayerPlan.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from ..errors import UserError
from .outputs import run_once
from .plan import LayerPlan


def call_order(model: nn.Module, example: torch.Tensor, run: nn.Module | None = None) -> list[str]:
    """Names (in `model`) of its Conv2d and Linear modules in the order a forward pass first runs them.

    run: the module to call when `model` is held inside a wrapper that prepares its input.
    """
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_pre_hook(
                lambda _m, _i, name=name: order.append(name) if name not in order else None))
    try:
        run_once(run if run is not None else model, example)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def alternatives(names: Iterable[str]) -> str:
    """A full-match regex naming exactly these modules."""
    return "|".join(re.escape(n) for n in names)


def last_transformer_block(order: list[str], modules: dict[str, nn.Module]) -> tuple[str, str, str] | None:
    """(attention output, MLP in, MLP out) of the last block before the head, or None for no transformer."""
    linears = [n for n in order if isinstance(modules[n], nn.Linear)][:-1]  # the head excluded
    for i in range(len(linears) - 3, 0, -1):
        attn, fc1, fc2 = (modules[n] for n in linears[i:i + 3])
        width = attn.out_features
        if not (attn.in_features == width == fc1.in_features == fc2.out_features
                and fc1.out_features == fc2.in_features):
            continue
        if modules[linears[i - 1]].in_features == width:  # v (or a fused qkv) reads the stream just before
            return linears[i], linears[i + 1], linears[i + 2]
    return None


def infer_plan(model: nn.Module, example: torch.Tensor, run: nn.Module | None = None) -> LayerPlan:
    """The LayerPlan of a model prunelora has no registry entry for (see the module docstring)."""
    order = call_order(model, example, run)
    modules = dict(model.named_modules())
    linears = [n for n in order if isinstance(modules[n], nn.Linear)]
    if not linears:
        raise UserError("cannot find the classifier head: the model runs no nn.Linear (pass an explicit LayerPlan)")
    head = linears[-1]
    block = last_transformer_block(order, modules)
    if block is not None:
        attn, _, fc2 = block
        return LayerPlan(prune_layers=alternatives([attn, fc2]), lora_layers=alternatives([attn, head]),
                         train_modules=(), head=head, lora_r=16, lora_dropout=0.0, family="vit")
    convs = [n for n in order if isinstance(modules[n], nn.Conv2d)]
    if not convs:
        raise UserError("cannot infer which layers to prune and adapt: the model is neither a convolutional "
                        "network nor a transformer with attention blocks (pass an explicit LayerPlan)")
    dense = [c for c in convs if modules[c].groups == 1]
    body_linears = linears[:-1]
    expansions = [n for n in body_linears if modules[n].out_features > modules[n].in_features]
    # A network with a single convolution adapts that one: it is all the body there is.
    adapted = ([c for c in dense[1:] if max(modules[c].kernel_size) > 1] + body_linears) or dense
    if not adapted:
        raise UserError("the model has no dense convolution to prune or adapt (pass an explicit LayerPlan)")
    return LayerPlan(prune_layers=alternatives(dense + expansions), lora_layers=alternatives(adapted),
                     train_modules=(head,), head=head, lora_r=8, lora_dropout=0.1, family="resnet")
