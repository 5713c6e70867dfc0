"""Model registry: a name gives a builder and the layers each unlearning method acts on.

The layer choices are the paper's (regexes over module names, PEFT-style), kept here beside the
architecture they describe so that methods stay architecture-agnostic.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import UserError
from .inference import infer_plan
from .plan import LayerPlan
from .resnet import ResNet, resnet18, resnet50
from .vit import ViT


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]
    family: str  # resnet | vit
    defaults: dict[str, Any]  # architecture arguments at the paper's size
    plan: LayerPlan
    # The arguments that rebuild this spec for one of its models (None: not one of them): how spec_of finds the
    # plan of a loaded model. None: models of this entry are never recognised (they get an inferred plan).
    recognise: Callable[[nn.Module], dict[str, Any] | None] | None = None


def _vit(num_classes: int, in_channels: int, image_size: int, **kwargs) -> ViT:
    return ViT(num_classes, in_channels, image_size, **kwargs)


def _resnet(builder):
    def build(num_classes: int, in_channels: int, image_size: int, **kwargs):
        return builder(num_classes, in_channels, **kwargs)
    return build


# ResNet: every conv is pruned (the paper); LoRA on the residual blocks' convs, the head trains.
_RESNET_PLAN = LayerPlan(
    prune_layers=r".*conv\d?$|.*stem\.0$|.*shortcut\.0$",
    lora_layers=r"layer\d+\.\d+\.conv\d$", train_modules=("fc",), head="fc", lora_r=8, lora_dropout=0.1,
)



def _vit_spec(depth: int) -> ModelSpec:
    last = depth - 1
    # ViT: the paper prunes "the last linear layer and the last attention layer" and adapts the last
    # attention layer and the head. The last linear layer of the feature extractor is the last
    # block's fc2: pruning the 10-way classifier instead (the seed's reading) would remove half the
    # classes (docs/design.md, trap 6).
    return ModelSpec(
        build=_vit, family="vit", defaults=dict(patch=4, dim=384, depth=12, heads=6, mlp_dim=1536),
        plan=LayerPlan(prune_layers=rf"blocks\.{last}\.(attn\.out_proj|mlp\.fc2)",
                       lora_layers=rf"blocks\.{last}\.attn\.out_proj|head", train_modules=(), head="head",
                       lora_r=16, lora_dropout=0.0),
        recognise=_a_vit,
    )


def _a_resnet(model: nn.Module) -> dict[str, Any] | None:
    return {} if isinstance(model, ResNet) else None


def _a_vit(model: nn.Module) -> dict[str, Any] | None:
    return {"depth": len(model.blocks)} if isinstance(model, ViT) else None


# A model is one file (its nn.Module) plus one line here: its name, and its spec for the given arguments.
REGISTRY: dict[str, Callable[[dict[str, Any]], ModelSpec]] = {
    "resnet18": lambda args: ModelSpec(_resnet(resnet18), "resnet", dict(width=64), _RESNET_PLAN, _a_resnet),
    "resnet50": lambda args: ModelSpec(_resnet(resnet50), "resnet", dict(width=64), _RESNET_PLAN, _a_resnet),
    "vit": lambda args: _vit_spec(int(args.get("depth", 12))),
}


def model_names() -> list[str]:
    return sorted(REGISTRY)


def get_spec(name: str, args: dict[str, Any] | None = None) -> ModelSpec:
    if name not in REGISTRY:
        raise UserError(f"unknown model '{name}' (choose from: {', '.join(model_names())})")
    return REGISTRY[name](args or {})


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The registry's spec for one of prunelora's own models (built here or loaded), else None.

    The Python API uses it so that a model from `prunelora.load` gets its architecture's plan
    (the paper's layers, rank and dropout), as the CLI does, instead of a generic inferred one.
    """
    for make in REGISTRY.values():
        recognise = make({}).recognise
        args = recognise(model) if recognise is not None else None
        if args is not None:
            return make(args)
    return None


def build_model(name: str, num_classes: int, in_channels: int, image_size: int,
                mean: tuple[float, ...], std: tuple[float, ...], args: dict[str, Any] | None = None) -> nn.Module:
    """Build a registered model; unknown or invalid architecture arguments are user errors."""
    spec = get_spec(name, args)
    kwargs = {**spec.defaults, **(args or {})}
    unknown = set(kwargs) - set(spec.defaults)
    if unknown:
        raise UserError(f"model '{name}' has no argument '{sorted(unknown)[0]}' (it takes: {', '.join(sorted(spec.defaults))})")
    try:
        return spec.build(num_classes, in_channels, image_size, mean=tuple(mean), std=tuple(std), **kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot build model '{name}' with {kwargs}: {exc}") from None


__all__ = ["LayerPlan", "ModelSpec", "REGISTRY", "ResNet", "ViT", "build_model", "get_spec", "infer_plan", "model_names",
           "spec_of"]
