"""Plans inferred from structure (torchvision, timm and Hugging Face naming), and masks bound by exact name."""
from __future__ import annotations

import re
import warnings

import pytest
import torch

import prunelora
from prunelora.models.inference import call_order

from ..zoo import TimmViT, TorchvisionResNet18, hf_models


def names(pattern: str, model: torch.nn.Module) -> set[str]:
    return {n for n, _ in model.named_modules() if n and re.fullmatch(pattern, n)}


@pytest.fixture(scope="module")
def example(digits_splits):
    return digits_splits.retain_train.images[:2]


def test_torchvision_resnet_plan(example):
    model = TorchvisionResNet18()
    plan = prunelora.plan(model, example).plan
    convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    block_convs = {n for n in convs if re.fullmatch(r"layer\d\.\d\.conv\d", n)}
    assert names(plan.prune_layers, model) == convs  # the stem and the downsample convs too, as the paper
    assert names(plan.lora_layers, model) == block_convs  # not the stem conv1, not the 1x1 downsample
    assert (plan.head, plan.train_modules, plan.family) == ("fc", ("fc",), "resnet")


def test_timm_vit_plan(example):
    model = TimmViT(depth=3)
    plan = prunelora.plan(model, example).plan
    assert names(plan.prune_layers, model) == {"blocks.2.attn.proj", "blocks.2.mlp.fc2"}
    assert names(plan.lora_layers, model) == {"blocks.2.attn.proj", "head"}
    assert (plan.head, plan.train_modules, plan.family) == ("head", (), "vit")


HF_PLANS = {
    # model: (pruned, adapted, head)
    "vit": ({"vit.layers.1.attention.o_proj", "vit.layers.1.mlp.fc2"},
            {"vit.layers.1.attention.o_proj", "classifier"}, "classifier"),
    "swin": ({"swin.encoder.layers.1.blocks.0.attention.o_proj", "swin.encoder.layers.1.blocks.0.mlp.fc2"},
             {"swin.encoder.layers.1.blocks.0.attention.o_proj", "classifier"}, "classifier"),
    "resnet": (None, {f"resnet.encoder.stages.{s}.layers.0.layer.{i}.convolution" for s in (0, 1) for i in (0, 1)},
               "classifier.1"),
    "convnext": (None, None, "classifier"),
}


@pytest.mark.parametrize("family", list(HF_PLANS))
def test_hugging_face_plans_whatever_the_layer_names(family, example):
    pytest.importorskip("transformers")
    model = hf_models()[family]
    plan = prunelora.plan(model, example).plan
    pruned, adapted, head = HF_PLANS[family]
    assert plan.head == head
    if pruned is not None:
        assert names(plan.prune_layers, model) == pruned
    if adapted is not None:
        assert names(plan.lora_layers, model) == adapted
    if family == "resnet":  # every conv pruned; the 7x7 stem and the 1x1 shortcut not adapted
        convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
        assert names(plan.prune_layers, model) == convs
    if family == "convnext":  # depthwise convs are not pruned; the block MLPs are adapted
        assert not any("dwconv" in n for n in names(plan.prune_layers, model))
        assert {n for n in names(plan.lora_layers, model) if "pwconv" in n} == {
            f"convnext.encoder.stages.{s}.layers.0.pwconv{i}" for s in (0, 1) for i in (1, 2)}
    embedding = "embeddings" if family != "resnet" else "embedder"
    if plan.family == "vit":
        assert not any(embedding in n for n in names(plan.prune_layers, model) | names(plan.lora_layers, model))


def test_the_plan_report_lists_each_methods_layers_with_parameter_counts(example):
    report = prunelora.plan(TimmViT(), example)
    text = str(report)
    assert "prunelora:" in text and "blocks.1.attn.proj (1,056)" in text
    parts = report.to_dict()["methods"]
    assert set(parts["prunelora"]) == {"prunes", "adapts", "trains"}
    assert parts["finetune"] == {"trains": [["all parameters", report.total_params]]}


def test_call_order_follows_the_forward_pass_not_the_definition(example):
    model = TorchvisionResNet18()
    order = call_order(model, example.float() / 255)
    assert order[0] == "conv1" and order[-1] == "fc"
    assert order.index("layer2.0.conv1") < order.index("layer2.0.conv2")


def run(model, splits, method, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunelora.unlearn(model, splits.retain_train, splits.forget_train, method=method, epochs=2,
                                 lr=1e-2, **options)


@pytest.mark.slow
def test_keep_sparsity_masks_land_on_exactly_the_pruned_layers_of_a_torchvision_resnet(digits_splits):
    """The stem is `conv1` like every block's first conv: exact names keep each mask on its own layer."""
    result = run(TorchvisionResNet18(), digits_splits, "prunelora", keep_sparsity=True, prune_mode="mask")
    merged = result.model
    for name, module in merged.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            rows = module.weight.detach().flatten(1).abs().sum(1)
            zero = int((rows == 0).sum())
            assert zero == module.out_channels // 2, (name, zero, module.out_channels)


@pytest.mark.slow
@pytest.mark.parametrize("make", [TorchvisionResNet18, TimmViT], ids=["torchvision-resnet18", "timm-vit"])
@pytest.mark.parametrize("method", ["retrain", "finetune", "prune-finetune", "lora", "prunelora"])
def test_every_method_runs_on_models_named_as_their_libraries_name_them(make, method, digits_splits):
    model = make()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run(model, digits_splits, method, pretrain_epochs=1)
    assert type(result.model) is make
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is not modified
    assert len(result.history) == (1 if method == "retrain" else 2)  # Retrain runs its own recipe
    assert 0 <= result.metrics["forget_acc"] <= 100


@pytest.mark.slow
@pytest.mark.parametrize("make", [TorchvisionResNet18, TimmViT], ids=["torchvision-resnet18", "timm-vit"])
def test_every_lora_b_moves(make, digits_splits, monkeypatch):
    import prunelora.api as api

    seen = {}
    real = api.run_method

    def keep(*args, **kwargs):
        seen["run"] = real(*args, **kwargs)
        return seen["run"]

    monkeypatch.setattr(api, "run_method", keep)
    run(make(), digits_splits, "prunelora")
    lora_b = {n: m.weight for n, m in seen["run"].prepared.model.named_modules() if n.endswith("lora_B.default")}
    assert lora_b and [n for n, w in lora_b.items() if float(w.detach().abs().max()) == 0.0] == []
