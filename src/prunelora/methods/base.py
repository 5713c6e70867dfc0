"""What a method is: model surgery, which parameters train, which data it sees, its optimiser.

A method never owns a training loop: it returns a Prepared model and the single loop in train.py
runs it. Adding a method is one file and one registry line.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RecipeConfig, UnlearnConfig
from ..data import ImageSet, to_float
from ..models import LayerPlan
from ..train import OptimSettings


@dataclass
class MethodContext:
    """Everything a method may need besides the original model."""

    plan: LayerPlan
    unlearn: UnlearnConfig
    pretrain: OptimSettings  # the original's recipe, resolved for the model family
    pretrain_epochs: int
    fresh_model: Callable[[], nn.Module]  # a newly initialised model of the same architecture
    retain: ImageSet  # the data the method may see (batch-norm recalibration, example inputs)

    @property
    def example_input(self) -> torch.Tensor:
        """Two images as the model takes them, for torch-pruning's dependency graph."""
        return to_float(self.retain.images[:2])


@dataclass
class Prepared:
    """A model ready for the shared loop, and how to turn it into the deliverable."""

    model: nn.Module
    optim: OptimSettings
    epochs: list[int]  # evaluation budgets (the run lasts max(epochs))
    after_step: Callable[[], None] | None = None  # constraints such as pruning masks
    deliver: Callable[[nn.Module], nn.Module] = copy.deepcopy  # a frozen copy; LoRA merges into one
    save_adapters: Callable[[Path], None] | None = None
    adapter_base: Callable[[], nn.Module] | None = None  # the model the saved adapters apply to (a copy)
    info: dict[str, Any] = field(default_factory=dict)  # surgery facts for the row (pruned channels, ...)


class Method:
    """Base class: subclasses set name and implement prepare()."""

    name: str = ""
    exact: bool = False  # True for Retrain: evaluated once, at the end of its own recipe
    # What the method does to the layer plan (plan descriptions and checks read these, never a list of names):
    prunes: bool = False  # structured pruning of plan.prune_layers
    adapts: bool = False  # LoRA on plan.lora_layers (+ plan.train_modules trained in full)
    trains_all: bool = False  # every parameter trains
    reinitializes: bool = False  # starts from a fresh model (Retrain)

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        raise NotImplementedError


def unlearn_optim(cfg: UnlearnConfig) -> OptimSettings:
    return OptimSettings(optimizer=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         batch_size=cfg.batch_size, augment=cfg.augment, schedule="constant")


def working_copy(model: nn.Module, trainable: bool) -> nn.Module:
    """A deep copy of the original (never modified in place) with every parameter's grad flag set."""
    model = copy.deepcopy(model)
    for param in model.parameters():
        param.requires_grad_(trainable)
    return model


def resolve_recipe(recipe: RecipeConfig, family: str) -> OptimSettings:
    """Fill the family defaults of the pre-training recipe (see RecipeConfig)."""
    vit = family == "vit"
    return OptimSettings(
        optimizer=recipe.optimizer or ("adamw" if vit else "sgd"),
        lr=recipe.lr if recipe.lr is not None else (3e-3 if vit else 0.1),
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay if recipe.weight_decay is not None else (0.05 if vit else 5e-4),
        batch_size=recipe.batch_size,
        augment=recipe.augment,
        schedule="cosine",
        warmup_epochs=recipe.warmup_epochs if recipe.warmup_epochs is not None else (2.0 if vit else 0.0),
    )
