"""What a method is: a surgery (what is done to the model) times an objective (what one step
optimises, on which data), with the objective's optimiser settings.

A method never owns a training loop: it returns a Prepared model and the single loop in train.py
runs it with the objective. The named methods (methods/__init__.py) are points of that grid; any
other point is spelled OBJECTIVE@SURGERY ("salun@prune+lora"). Adding a method is one registry line.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RecipeConfig, UnlearnConfig, build
from ..data import ImageSet, to_float
from ..models import LayerPlan
from ..objectives import Objective, Recipe
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
    forget: ImageSet | None = None  # the data to forget (forget-aware objectives)
    forget_classes: list[int] | None = None  # the classes forgotten so far, in class-wise requests
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method or objective name
    flip: bool = True  # whether augmentation may mirror the images (the dataset's; digits: no)

    def optim_settings(self, args: Recipe, method: Any) -> OptimSettings:
        """A method's optimiser settings: its objective's recipe over unlearn.* (the paper's Adam 1e-3)."""
        return recipe_settings(args, self.unlearn, self.flip)

    @property
    def example_input(self) -> torch.Tensor:
        """Two images as the model takes them, for torch-pruning's dependency graph."""
        return to_float(self.retain.images[:2])


@dataclass
class Prepared:
    """A model ready for the shared loop, and how to turn it into the deliverable."""

    model: nn.Module
    epochs: list[int]  # evaluation budgets (the run lasts max(epochs); [0]: nothing trains)
    optim: OptimSettings | None = None  # None: the objective's recipe (set by Method.prepare)
    objective: Objective | None = None
    after_step: Callable[[], None] | None = None  # constraints such as pruning masks
    deliver: Callable[[nn.Module], nn.Module] = copy.deepcopy  # a frozen copy; LoRA merges into one
    save_adapters: Callable[[Path], None] | None = None
    adapter_base: Callable[[], nn.Module] | None = None  # the model the saved adapters apply to (a copy)
    info: dict[str, Any] = field(default_factory=dict)  # surgery facts for the row (pruned channels, ...)
    removed: dict[str, dict[str, list[int]]] | None = None  # remove mode: original indices taken out, per layer


def objective_args(objective: type[Objective], method: str, method_args: dict[str, dict[str, Any]]) -> Recipe:
    """The objective's settings: its paper's defaults < method_args[objective] < method_args[method]."""
    values = {**(method_args.get(objective.name) or {}), **(method_args.get(method) or {})}
    return build(objective.Args, values, f"method_args.{method}")


def recipe_settings(args: Recipe, unlearn: UnlearnConfig, flip: bool = True) -> OptimSettings:
    """OptimSettings from an objective's recipe; what it leaves at None comes from unlearn.* (the paper's
    paradigms: Adam 1e-3, no augmentation). flip: whether the images may be mirrored (the dataset's)."""
    def pick(value, default):
        return default if value is None else value

    return OptimSettings(optimizer=pick(args.optimizer, unlearn.optimizer), lr=pick(args.lr, unlearn.lr),
                         momentum=pick(args.momentum, 0.9), weight_decay=pick(args.weight_decay, unlearn.weight_decay),
                         batch_size=pick(args.batch_size, unlearn.batch_size),
                         augment=pick(args.augment, unlearn.augment), schedule="constant", nesterov=args.nesterov,
                         flip=flip)


def working_copy(model: nn.Module, trainable: bool) -> nn.Module:
    """A deep copy of the original (never modified in place) with every parameter's grad flag set."""
    model = copy.deepcopy(model)
    for param in model.parameters():
        param.requires_grad_(trainable)
    return model


# The ViT's linear warm-up, a share of its pre-training epochs. Measured 2026-12-03 on digits, cpu preset (60
# epochs, AdamW 3e-3, batch 32), original's test accuracy seeds 0/1/2: 2 warm-up epochs 97.8 / 98.8 / 90.7 (seed 2
# stalls); a tenth (6) 96.9 / 97.2 / 96.9; lr 1e-3 instead 97.2 / 96.3 / 96.9; lr 2e-3 96.3 / 97.8 / 96.3.
VIT_WARMUP_SHARE = 0.1


def resolve_recipe(recipe: RecipeConfig, family: str) -> OptimSettings:
    """Fill the family defaults of the pre-training recipe (see RecipeConfig)."""
    vit = family == "vit"
    return OptimSettings(
        optimizer=recipe.optimizer or ("adamw" if vit else "sgd"),
        lr=recipe.lr if recipe.lr is not None else (3e-3 if vit else 0.1),
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay if recipe.weight_decay is not None else (0.05 if vit else 5e-4),
        batch_size=recipe.batch_size if recipe.batch_size is not None else (32 if vit else 128),
        augment=recipe.augment,
        schedule="cosine",
        warmup_epochs=(recipe.warmup_epochs if recipe.warmup_epochs is not None
                       else recipe.epochs * VIT_WARMUP_SHARE if vit else 0.0),
    )
