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
from typing import Any

import torch
from torch import nn

from ...config.causal_lm import LMTrainConfig, LMUnlearnConfig
from ...errors import UserError
from ...models.causal_lm.structure import infer_plan
from ...objectives import Recipe
from ...registry import CAUSAL_LM
from ...train import OptimSettings
from ..base import Prepared
from ..surgery import Surgery, register_surgery
from .prune import prune

NAMES = ("none", "lora", "prune", "prune+lora")  # the operations operate() knows

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
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=targets, fan_in_fan_out=conv1d, task_type="CAUSAL_LM")
    return get_peft_model(model, config), targets


def operate(model: nn.Module, surgery: str, settings: LMUnlearnConfig,
            forget_loss: Callable[[nn.Module], torch.Tensor] | None = None) -> Operated:
    """A copy of `model` after `surgery` (the input is left untouched). forget_loss: the forget set's loss, for
    saliency pruning."""
    if surgery not in NAMES:
        raise UserError(f"unknown surgery '{surgery}' (choose {', '.join(NAMES)})")
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


@dataclass
class LMContext:
    """Everything a causal-LM surgery and its objective's optimiser need besides the original model."""

    unlearn: LMUnlearnConfig
    pretrain: LMTrainConfig
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    fresh_model: Callable[[], nn.Module] | None = None  # the initialisation Retrain trains from
    forget_loss: Callable[[nn.Module], torch.Tensor] | None = None  # the forget set's loss (saliency pruning)

    def optim_settings(self, args: Recipe, method: Any) -> OptimSettings:
        """AdamW (constant) with the objective's own values where it sets them, else unlearn.*: the LoRA
        methods start from zero adapters and take unlearn.lora_lr."""
        u = self.unlearn
        lr = args.lr if args.lr is not None else (u.lora_lr if method.adapts else u.lr)
        return OptimSettings(optimizer=args.optimizer or "adamw", lr=lr,
                             weight_decay=u.weight_decay if args.weight_decay is None else args.weight_decay,
                             batch_size=args.batch_size or u.batch_size)


def prepared_of(operated: Operated, ctx: LMContext) -> Prepared:
    """An operated model as the shared loop takes it: delivered with its adapters merged, adapters saved beside.
    The adapters are saved from the Prepared's model at the time (the trained one, gathered whole after FSDP)."""
    adapted = operated.adapted

    def deliver(model: nn.Module) -> nn.Module:
        return copy.deepcopy(model).merge_and_unload() if adapted else copy.deepcopy(model)

    prepared = Prepared(model=operated.model, epochs=[ctx.unlearn.epochs], deliver=deliver,
                        info={"pruned": operated.kept, "lora_targets": operated.lora_targets})
    if adapted:
        prepared.save_adapters = lambda folder: prepared.model.save_pretrained(str(folder))
        prepared.adapter_base = lambda: copy.deepcopy(prepared.model).unload()
    return prepared


def _surgery(name: str) -> Callable[[nn.Module, LMContext], Prepared]:
    def apply(original: nn.Module, ctx: LMContext) -> Prepared:
        return prepared_of(operate(original, name, ctx.unlearn, ctx.forget_loss), ctx)

    apply.__name__ = f"lm_{name}"
    return apply


def fresh(original: nn.Module, ctx: LMContext) -> Prepared:
    """Retrain: the initialisation trained from scratch with the original's recipe until memorised."""
    if ctx.fresh_model is None:
        raise ValueError("Retrain needs the initialisation to train from")
    p = ctx.pretrain
    return Prepared(model=ctx.fresh_model(), epochs=[p.epochs],
                    optim=OptimSettings(optimizer="adamw", lr=p.lr, weight_decay=p.weight_decay,
                                        batch_size=p.batch_size, schedule="cosine",
                                        warmup_epochs=min(5.0, p.epochs / 10)))


PRUNE_SPACE = (("prune_amount", ("float", 0.1, 0.6)), ("prune_score", ("choice", "magnitude", "saliency")),
               ("prune_targets", ("choice", "mlp", "mlp+heads")))
LORA_SPACE = (("lora_r", ("choice", 4, 8, 16, 32)), ("lora_targets", ("choice", "all", "attention", "mlp")))

for _surgery_entry in (
    Surgery("none", "FT", _surgery("none"), trains_all=True),
    Surgery("prune", "Prune", _surgery("prune"), prunes=True, trains_all=True, space=PRUNE_SPACE),
    Surgery("lora", "LoRA", _surgery("lora"), adapts=True, space=LORA_SPACE),
    Surgery("prune+lora", "PruneLoRA", _surgery("prune+lora"), prunes=True, adapts=True,
            space=PRUNE_SPACE + LORA_SPACE),
    Surgery("reinit", "Retrain", fresh, trains_all=True, reinitializes=True),
):
    register_surgery(_surgery_entry, task=CAUSAL_LM)
