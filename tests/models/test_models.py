"""Model registry, builders and the ViT's attention."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from prunelora.errors import UserError
from prunelora.methods.lora import attach_lora
from prunelora.models import REGISTRY, LayerPlan, build_model, get_spec, infer_plan, model_names
from prunelora.models.vit import Attention, ViT, sincos_2d

SMALL = {
    "resnet18": {"width": 2},
    "resnet50": {"width": 2},
    "vit": {"depth": 1, "dim": 16, "heads": 2, "mlp_dim": 32},
}


def test_registry_names():
    assert model_names() == sorted(["resnet18", "resnet50", "vit"]) == sorted(REGISTRY)
    assert set(SMALL) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_each_model_builds_and_forwards(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, 10, channels, size, (0.5,) * channels, (0.25,) * channels, SMALL[name])
    x = torch.rand(3, channels, size, size)
    model.eval()
    out = model(x)
    assert out.shape == (3, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the output depends on the input
    # the model normalises its input itself, with the given statistics
    assert torch.allclose(model.normalize.mean.flatten(), torch.full((channels,), 0.5))
    # the layer plan names modules that exist in this architecture
    plan = get_spec(name, SMALL[name]).plan
    names = [n for n, _ in model.named_modules()]
    assert any(re.fullmatch(plan.prune_layers, n) for n in names)
    assert any(re.fullmatch(plan.lora_layers, n) for n in names)
    assert plan.head in names and isinstance(model.get_submodule(plan.head), nn.Linear)


def test_model_width_changes_the_size():
    small = build_model("resnet18", 10, 3, 32, (0.5,) * 3, (0.25,) * 3, {"width": 2})
    wider = build_model("resnet18", 10, 3, 32, (0.5,) * 3, (0.25,) * 3, {"width": 4})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(wider) > 3 * count(small)
    assert small.stem[0].out_channels == 2 and small.fc.in_features == 16


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'resnet7'"):
        build_model("resnet7", 10, 3, 32, (0.5,), (0.25,))
    with pytest.raises(UserError, match="unknown model"):
        get_spec("VIT")


@pytest.mark.parametrize("name,args,match", [
    ("resnet18", {"widht": 4}, "has no argument 'widht'"),
    ("vit", {"depth": 1, "dim": 30, "heads": 2, "mlp_dim": 32}, "cannot build model 'vit'"),  # dim % 4
    ("vit", {"depth": 1, "dim": 16, "heads": 3, "mlp_dim": 32}, "cannot build model 'vit'"),  # dim % heads
    ("vit", {"depth": 1, "dim": 16, "heads": 2, "mlp_dim": 32, "patch": 5}, "cannot build model 'vit'"),
])
def test_bad_model_argument_is_a_user_error(name, args, match):
    with pytest.raises(UserError, match=match):
        build_model(name, 10, 3, 32, (0.5,) * 3, (0.25,) * 3, args)


def test_vit_plan_follows_the_depth():
    plan = get_spec("vit", {"depth": 3}).plan
    assert re.fullmatch(plan.prune_layers, "blocks.2.attn.out_proj")
    assert re.fullmatch(plan.prune_layers, "blocks.2.mlp.fc2")
    assert not re.fullmatch(plan.prune_layers, "blocks.1.attn.out_proj")
    assert not re.fullmatch(plan.prune_layers, "head")  # the classifier is never pruned (FINDINGS trap 6)
    assert re.fullmatch(plan.lora_layers, "head") and re.fullmatch(plan.lora_layers, "blocks.2.attn.out_proj")


@pytest.mark.parametrize("dim,heads", [(16, 2), (32, 4), (24, 1)])
def test_vit_attention_equals_torch_multihead_attention(dim, heads):
    torch.manual_seed(0)
    ours = Attention(dim, heads)
    for p in ours.parameters():  # non-trivial biases too
        nn.init.normal_(p, std=0.3)
    reference = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv.weight)
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.out_proj.weight)
        reference.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(3, 7, dim)
    expected, _ = reference(x, x, x, need_weights=False)
    got = ours(x)
    assert got.shape == (3, 7, dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_vit_attention_output_projection_is_called_by_forward():
    """A LoRA adapter on blocks.<last>.attn.out_proj changes the output (FINDINGS trap 1)."""
    torch.manual_seed(0)
    model = build_model("vit", 10, 1, 16, (0.5,), (0.25,), SMALL["vit"]).eval()
    x = torch.rand(4, 1, 16, 16)
    before = model(x)
    plan = LayerPlan(prune_layers=r"blocks\.0\.mlp\.fc2", lora_layers=r"blocks\.0\.attn\.out_proj", head="head",
                     lora_r=4)
    peft_model = attach_lora(model, plan, dropout=0.0).eval()
    adapters = [m for n, m in peft_model.named_modules() if n.endswith("attn.out_proj") and hasattr(m, "lora_B")]
    assert len(adapters) == 1
    with torch.no_grad():
        torch.testing.assert_close(peft_model(x), before)  # lora_B starts at zero
        for lora_b in adapters[0].lora_B.values():
            lora_b.weight.normal_()
        assert not torch.allclose(peft_model(x), before, atol=1e-4)


def test_sincos_positions_are_fixed_and_distinct():
    pos = sincos_2d(4, 16)
    assert pos.shape == (16, 16)
    assert torch.equal(pos, sincos_2d(4, 16))
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 0  # every position has its own code
    vit = ViT(10, 3, 16, patch=4, dim=16, depth=1, heads=2, mlp_dim=32)
    assert "patch_embed.pos" not in vit.state_dict()  # not stored: rebuilt from the shape


def test_layer_plan_infer_for_a_user_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 10))
    plan = infer_plan(model, torch.rand(2, 1, 5, 5))
    assert plan.head == "4" and plan.train_modules == ("4",) and plan.family == "resnet"
    assert re.fullmatch(plan.prune_layers, "0") and re.fullmatch(plan.prune_layers, "2")
    assert not re.fullmatch(plan.prune_layers, "4")
    assert re.fullmatch(plan.lora_layers, "2") and not re.fullmatch(plan.lora_layers, "0")  # the stem is not adapted
    with pytest.raises(UserError, match="no nn.Linear"):
        infer_plan(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.rand(2, 1, 5, 5))
