"""LoRA: PEFT adapters on the plan's layers; only adapters and the head train."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .base import Method, MethodContext, Prepared, unlearn_optim, working_copy
from .lora import attach_lora, merged_copy, unloaded_copy


def with_adapters(model: nn.Module, ctx: MethodContext) -> nn.Module:
    cfg = ctx.unlearn
    return attach_lora(model, ctx.plan, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)


def lora_prepared(peft_model: nn.Module, ctx: MethodContext, **kwargs) -> Prepared:
    def save_adapters(directory: Path) -> None:
        peft_model.save_pretrained(str(directory))

    return Prepared(model=peft_model, optim=unlearn_optim(ctx.unlearn), epochs=ctx.unlearn.epochs,
                    deliver=merged_copy, save_adapters=save_adapters, adapter_base=lambda: unloaded_copy(peft_model),
                    **kwargs)


class LoRA(Method):
    name = "lora"
    prunes, adapts, trains_all = False, True, False

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        return lora_prepared(with_adapters(working_copy(original, False), ctx), ctx)
