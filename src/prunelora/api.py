"""The Python API: unlearn a user's own nn.Module on their own data, evaluate it, load checkpoints."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import io
from .adapters import is_adapter_folder, load_adapter
from .config import RunConfig, UnlearnConfig, validate
from .data import ImageSet, Splits
from .errors import UserError
from .metrics.evaluate import collect_logits, metrics_from_logits
from .models import LayerPlan, spec_of
from .runner import method_context, reinitialized, run_method


def _as_imageset(data: Any, name: str) -> ImageSet:
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = (torch.as_tensor(x) for x in data)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise UserError(f"{name}: images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        return ImageSet(images, labels.long().to(images.device))
    raise UserError(f"{name} must be an ImageSet or an (images, labels) pair")


def unlearn(model: nn.Module, retain: Any, forget: Any | None = None, method: str = "prunelora",
            epochs: int = 5, plan: LayerPlan | None = None, seed: int = 0,
            pretrain_epochs: int = 15, **options: Any) -> nn.Module:
    """Return an unlearned copy of `model`, trained on `retain` only (the input model is not modified).

    retain / forget: ImageSet or (uint8 images (N, C, H, W), labels). The model takes float images in
    [0, 1] and normalises them itself. `plan` says which layers to prune and adapt: when None,
    prunelora's own models (from `prunelora.load`) use their registry plan, as the CLI does; other
    models get an inferred one (convs, else Linears, and the last Linear as head). options: any UnlearnConfig field
    (lr, prune_amount, prune_mode, keep_sparsity, lora_r, ...). The forget set is not trained on;
    it is accepted so that methods that use it can be added without changing this signature.
    """
    retain_set = _as_imageset(retain, "retain")
    if forget is not None:
        _as_imageset(forget, "forget")
    fields = {f.name for f in dataclasses.fields(UnlearnConfig)}
    unknown = set(options) - fields
    if unknown:
        raise UserError(f"unknown option '{sorted(unknown)[0]}' (known: {', '.join(sorted(fields))})")
    config = RunConfig(unlearn=UnlearnConfig(epochs=[epochs], **options))
    config.pretrain.epochs = pretrain_epochs
    validate(config)
    spec = spec_of(model)
    plan = plan or (spec.plan if spec is not None else LayerPlan.infer(model))
    family = spec.family if spec is not None else (
        "resnet" if any(isinstance(m, nn.Conv2d) for m in model.modules()) else "vit")
    device = retain_set.labels.device
    model = model.to(device)
    ctx = method_context(config, plan, family, lambda: reinitialized(model), retain_set)
    run = run_method(method, model, retain_set, ctx, seed=seed, cache_prefix=config.unlearn.cache_prefix, progress=False)
    return run.snapshots[-1].model


def evaluate(model: nn.Module, splits: Splits, seed: int = 0, batch_size: int = 1024,
             mia_cap: int = 1000) -> dict[str, float]:
    """UA, RA, TA, forget-test accuracy and MIA-Efficacy (with the attacker's accuracy), in percent."""
    logits, labels = collect_logits(model, splits, batch_size)
    return metrics_from_logits(logits, labels, seed, mia_cap)


def load(path: str | Path) -> nn.Module:
    """A model saved by prunelora; no unpickling.

    A .safetensors checkpoint gives the model it describes; a saved adapter folder gives its base
    with the adapter applied, as a PEFT model (the same predictions as the merged checkpoint).
    """
    if is_adapter_folder(Path(path)):
        return load_adapter(path)
    return io.load_model(path)[0]
