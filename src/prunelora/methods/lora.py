"""LoRA adapters through HF PEFT: a LoraConfig plus get_peft_model, the convention users know."""
from __future__ import annotations

from torch import nn

from ..models import LayerPlan


def lora_config(plan: LayerPlan, r: int | None, alpha: int | None, dropout: float | None):
    from peft import LoraConfig

    rank = r if r is not None else plan.lora_r
    return LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        lora_dropout=dropout if dropout is not None else plan.lora_dropout,
        target_modules=plan.lora_layers,  # a string is a full-match regex in PEFT
        modules_to_save=list(plan.train_modules) or None,
        bias="none",
    )


def attach_lora(model: nn.Module, plan: LayerPlan, r: int | None = None, alpha: int | None = None,
                dropout: float | None = None) -> nn.Module:
    """Wrap the model with PEFT LoRA: only adapters (and the plan's train_modules) require grad."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(plan, r, alpha, dropout))


def merged_copy(peft_model: nn.Module) -> nn.Module:
    """The deliverable model: a deep copy with the adapters merged into the weights."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()
