"""The Python API: prunelora's own models get their registry plan (as on the CLI), others an inferred one."""
from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import prunelora
import prunelora.api as api
from prunelora import io
from prunelora.models import build_model, get_spec


class Captured(Exception):
    """Stops run_method once the context is seen."""


def _plan_used(monkeypatch, model, splits) -> tuple:
    seen = {}

    def capture(name, original, retain, ctx, **kwargs):
        seen["ctx"] = ctx
        raise Captured

    monkeypatch.setattr(api, "run_method", capture)
    with pytest.raises(Captured):
        prunelora.unlearn(model, splits.retain_train, splits.forget_train, method="prunelora", epochs=1)
    return seen["ctx"].plan, seen["ctx"].pretrain


@pytest.mark.parametrize("name,args", [("resnet18", {"width": 4}), ("vit", {"depth": 2, "dim": 32, "heads": 2,
                                                                              "mlp_dim": 64})])
def test_a_loaded_prunelora_model_uses_its_registry_plan(name, args, digits_splits, tmp_path, monkeypatch):
    channels, size, _ = digits_splits.image_shape
    model = build_model(name, 10, channels, size, digits_splits.mean, digits_splits.std, args)
    path = tmp_path / "m.safetensors"
    io.save_model(model, path, {"model": name, "model_args": args, "num_classes": 10, "in_channels": channels,
                                "image_size": size, "mean": list(digits_splits.mean), "std": list(digits_splits.std)})
    plan, recipe = _plan_used(monkeypatch, prunelora.load(path), digits_splits)
    spec = get_spec(name, args)
    assert plan == dataclasses.replace(spec.plan, family=spec.family)
    assert recipe.optimizer == ("adamw" if name == "vit" else "sgd")  # Retrain's recipe follows the family


def test_a_users_own_model_gets_an_inferred_plan(digits_splits, monkeypatch):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10))
    plan, _ = _plan_used(monkeypatch, model, digits_splits)
    assert plan.head == "3" and plan.prune_layers == "0" and plan.family == "resnet"
