"""The model registry: a new model is its nn.Module plus one registry line, then built and planned like the others."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import prunelora.models
from prunelora.errors import UserError
from prunelora.models import REGISTRY, LayerPlan, ModelSpec, build_model, get_spec, model_names, spec_of
from prunelora.models.layers import GlobalAvgPool, Normalize


class Tiny(nn.Module):
    """One conv and a head: the smallest model a LayerPlan can name layers of."""

    def __init__(self, num_classes: int, in_channels: int, width: int, mean: tuple, std: tuple):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        self.norm = Normalize(mean, std)
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(self.norm(x)))))


def build_tiny(num_classes: int, in_channels: int, image_size: int, mean: tuple, std: tuple, width: int) -> Tiny:
    return Tiny(num_classes, in_channels, width, mean, std)


TINY_PLAN = LayerPlan(prune_layers=r"conv", lora_layers=r"conv", train_modules=("fc",), head="fc", lora_r=2)


def tiny_spec(args: dict) -> ModelSpec:
    return ModelSpec(build_tiny, "resnet", dict(width=4), TINY_PLAN,
                     lambda model: {} if isinstance(model, Tiny) else None)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(REGISTRY, "tiny", tiny_spec)  # the one registry line a new model needs


def test_a_registered_model_builds_and_forwards(tiny):
    assert "tiny" in prunelora.models.REGISTRY and model_names() == ["resnet18", "resnet50", "tiny", "vit"]
    model = build_model("tiny", 10, 1, 8, (0.5,), (0.25,), {"width": 6})
    assert isinstance(model, Tiny) and model.conv.out_channels == 6 and model.fc.out_features == 10
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert build_model("tiny", 3, 3, 8, (0.5,) * 3, (0.25,) * 3).conv.out_channels == 4  # the spec's default
    assert torch.equal(model.norm.mean.flatten(), torch.tensor([0.5]))


def test_a_registered_model_has_its_spec_and_plan(tiny):
    spec = get_spec("tiny")
    assert spec.family == "resnet" and spec.defaults == {"width": 4} and spec.plan is TINY_PLAN
    model = build_model("tiny", 10, 1, 8, (0.5,), (0.25,))
    names = [n for n, _ in model.named_modules() if n]
    assert [n for n in names if re.fullmatch(spec.plan.prune_layers, n)] == ["conv"]
    assert [n for n in names if re.fullmatch(spec.plan.lora_layers, n)] == ["conv"]
    assert spec_of(model).plan is TINY_PLAN  # a loaded model of the entry gets the registered plan


def test_a_registered_model_refuses_arguments_it_does_not_take(tiny):
    with pytest.raises(UserError) as caught:
        build_model("tiny", 10, 1, 8, (0.5,), (0.25,), {"depth": 2})
    assert str(caught.value) == "model 'tiny' has no argument 'depth' (it takes: width)"
    with pytest.raises(UserError, match="cannot build model 'tiny' with"):
        build_model("tiny", 10, 1, 8, (0.5,), (0.25,), {"width": 0})


def test_the_registry_is_back_to_its_models_after_the_dummy():
    assert model_names() == ["resnet18", "resnet50", "vit"]
    with pytest.raises(UserError) as caught:
        get_spec("tiny")
    assert str(caught.value) == "unknown model 'tiny' (choose from: resnet18, resnet50, vit)"


def test_spec_of_finds_the_registry_entry_of_built_in_models():
    resnet = build_model("resnet50", 10, 1, 16, (0.5,), (0.25,), {"width": 4})
    resnet_spec = spec_of(resnet)  # every ResNet shares the ResNet plan
    assert resnet_spec.plan == get_spec("resnet50").plan and resnet_spec.family == "resnet"
    vit = build_model("vit", 10, 1, 16, (0.5,), (0.25,), {"depth": 3, "dim": 16, "heads": 2, "mlp_dim": 32})
    assert spec_of(vit).plan.prune_layers == r"blocks\.2\.(attn\.out_proj|mlp\.fc2)"
    assert spec_of(nn.Linear(2, 2)) is None
