"""Everything a run can refuse before a single file is written: the device, the methods, the layer plans.

The config module only checks what it can without the registries; the method names (groups such as
"all" and "paper" expanded) and what each method needs of the scenario and the models are checked here.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from ..config import RunConfig
from ..data import RawDataset, class_index
from ..errors import UserError
from ..machine import select_device as select_device  # re-exported: the driver's commands import it here
from ..methods import get_method, method_names
from ..methods.pruning import USE_MASK, matching_modules, removal_blocker
from ..models import LayerPlan, build_model, get_spec
from ..runner import effective_plan


def normalise_methods(config: RunConfig, needed: bool = True) -> None:
    """Expand the config's method groups ("all", "paper") into registry names, in place; none is an error
    unless the run only evaluates (needed=False).

    Idempotent: commands call it before naming the output folder, check_config again before running.
    """
    config.methods = method_names(list(config.methods), class_wise=config.data.class_wise)
    if needed and not config.methods:
        raise UserError("at least one method is needed (for example --methods finetune,prunelora)")


def check_methods(config: RunConfig, needed: bool = True) -> None:
    """Each method's own settings, and whole-class methods only where whole classes are forgotten."""
    normalise_methods(config, needed)
    for name in config.methods:
        method = get_method(name)
        method.check(config.method_args)
        if method.class_only and not config.data.class_wise:
            raise UserError(f"{name} forgets whole classes: it runs in the class scenario (or sequential class "
                            f"requests), not in {config.data.scenario} forgetting")


def check_config(config: RunConfig, raw: RawDataset | None = None, registry_models: bool = True,
                 unlearns: bool = True) -> dict[str, tuple[nn.Module, LayerPlan]]:
    """Everything that can be refused before a single file is written.

    Returns, per registry model, the freshly built model and the plan it was checked against
    (the run's plan report describes them). registry_models=False: the run's model is the
    user's own (checked when it is loaded). unlearns=False: the run only evaluates (no method is needed).
    """
    check_methods(config, unlearns)
    if raw is not None and config.data.scenario == "class":
        config.data.forget_class = class_index(raw, config.data.forget_class)
    if not registry_models:
        return {}
    for name in config.models:
        get_spec(name, config.model_args.get(name))
    if raw is None:
        return {}
    return check_plans(config, raw)


def check_plans(config: RunConfig, raw: RawDataset) -> dict[str, tuple[nn.Module, LayerPlan]]:
    """The layer patterns must name layers of every registry model before anything trains."""
    checked: dict[str, tuple[nn.Module, LayerPlan]] = {}
    channels, size, width = raw.shape
    methods = [get_method(m) for m in config.methods]
    prunes, adapts = any(m.prunes for m in methods), any(m.adapts for m in methods)
    for name in config.models:
        args = config.model_args.get(name, {})
        spec = get_spec(name, args)
        check_image_shape(name, {**spec.defaults, **args}, spec.family, size, width)
        model = build_model(name, raw.num_classes, channels, size, raw.mean, raw.std, args)
        plan = dataclasses.replace(effective_plan(config, spec.plan), family=spec.family)
        checked[name] = (model, plan)
        if prunes:
            matching_modules(model, plan.prune_layers)
            reason = removal_blocker(model, plan.prune_layers) if config.unlearn.prune_mode == "remove" else None
            if reason:
                raise UserError(f"model '{name}': {reason}{USE_MASK}")
        if adapts:
            matching_modules(model, plan.lora_layers)
    return checked


def check_image_shape(name: str, args: dict, family: str, height: int, width: int) -> None:
    """A ViT cuts square images into patches: other sides are refused with the --image-size that fits."""
    patch = args.get("patch")
    if family != "vit" or not patch or (height == width and height % patch == 0):
        return
    side = max(patch, round(max(height, width) / patch) * patch)
    raise UserError(f"model '{name}' takes square images whose side is a multiple of its patch ({patch} pixels); "
                    f"the data's are {width} x {height} (width x height): give --image-size {side} (an image folder, a datasets folder "
                    "or digits), or leave the ViT out (--models resnet18)")
