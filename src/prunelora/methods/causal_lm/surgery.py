"""What a method does to a causal LM before its objective trains it: nothing, prune, LoRA, or both (PruneLoRA).

none trains every weight (full finetuning); lora freezes the model and trains PEFT LoRA adapters on the
plan's projections; prune removes MLP neurons and/or attention heads (prune.py) and trains what is left;
prune+lora prunes, then trains adapters on the pruned model: the paper's PruneLoRA. With gradient
checkpointing on, the input embeddings are made to require grad: otherwise no activation entering a
checkpointed block requires grad, reentrant checkpointing backpropagates nothing, and the adapters never
move (open-unlearning issue #178; transformers' enable_input_require_grads).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ...config.causal_lm import LMUnlearnConfig
from ...errors import UserError
from ...models.causal_lm.structure import infer_plan
from .prune import prune

SURGERIES = ("none", "lora", "prune", "prune+lora")


@dataclass
class Operated:
    """A model ready for its objective, and what was done to it."""

    model: nn.Module
    surgery: str
    kept: dict[str, int] = field(default_factory=dict)  # what pruning kept
    lora_targets: list[str] = field(default_factory=list)

    @property
    def adapted(self) -> bool:
        return "lora" in self.surgery

    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def merged(self) -> nn.Module:
        """The plain transformers model (adapters merged into the weights)."""
        if not self.adapted:
            return self.model
        return copy.deepcopy(self.model).merge_and_unload()


def with_lora(model: nn.Module, settings: LMUnlearnConfig) -> tuple[nn.Module, list[str]]:
    from peft import LoraConfig, get_peft_model

    plan = infer_plan(model)
    targets = plan.suffixes(settings.lora_targets)
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    config = LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=targets, fan_in_fan_out=conv1d, task_type="CAUSAL_LM")
    return get_peft_model(model, config), targets


def operate(model: nn.Module, surgery: str, settings: LMUnlearnConfig,
            forget_loss: Callable[[nn.Module], torch.Tensor] | None = None) -> Operated:
    """A copy of `model` after `surgery` (the input is left untouched). forget_loss: the forget set's loss, for
    saliency pruning."""
    if surgery not in SURGERIES:
        raise UserError(f"unknown surgery '{surgery}' (choose {', '.join(SURGERIES)})")
    model = copy.deepcopy(model)
    kept: dict[str, int] = {}
    if surgery.startswith("prune"):
        kept = prune(model, settings.prune_targets, settings.prune_amount,
                     forget_loss if settings.prune_score == "saliency" else None)
    targets: list[str] = []
    if surgery.endswith("lora"):
        model, targets = with_lora(model, settings)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    if settings.gradient_checkpointing:
        checkpointing(model)
    return Operated(model, surgery, kept, targets)


def enable_checkpointing(model: nn.Module) -> None:
    """Reentrant activation checkpointing of every block (transformers 5's name, or 4's)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})


def checkpointing(model: nn.Module) -> None:
    """Gradient checkpointing that still trains adapters (see the module docstring)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise UserError(f"{type(base).__name__} does not support gradient checkpointing: leave out "
                        "--gradient-checkpointing")
    enable_checkpointing(base)
    base.enable_input_require_grads()
    base.config.use_cache = False
