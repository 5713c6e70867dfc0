"""Removed channels put back as zeros reproduce the pruned model exactly, in the original shapes."""
import copy

import torch

from prunelora.methods.pruning import remove_channels
from prunelora.methods.reinflate import check_exact, reinflate, reinflated_state
from prunelora.models import build_model, get_spec

from ..zoo import TorchvisionResNet18


def _pruned(model, plan, example):
    pruned = copy.deepcopy(model)
    counts, removed = remove_channels(pruned, plan.prune_layers, 0.5, plan.head, example)
    assert counts["params_after"] < counts["params_before"] and removed
    return pruned, removed


def _randomise_batchnorms(model):
    """Non-trivial statistics and affine parameters, so zeroed channels are really tested."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)


def test_prunelora_resnet_reinflates_exactly():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": 8})
    _randomise_batchnorms(model)
    example = torch.rand(4, 3, 16, 16)
    pruned, removed = _pruned(model, get_spec("resnet18").plan, example)
    back = reinflate(pruned, copy.deepcopy(model), removed)
    assert all(a.shape == b.shape for a, b in zip(back.state_dict().values(), model.state_dict().values()))
    assert check_exact(pruned, back, example) < 1e-5
    # the removed output channels of a conv are all-zero rows; the kept ones are the pruned model's rows
    name, record = next((n, r) for n, r in removed.items() if "out" in r and n.endswith("conv1"))
    weight = back.get_submodule(name).weight
    assert weight[record["out"]].abs().sum() == 0
    assert weight[[i for i in range(weight.shape[0]) if i not in record["out"]]].shape[0] == \
        pruned.get_submodule(name).weight.shape[0]


def test_torchvision_naming_and_adapter_tensors():
    torch.manual_seed(0)
    model = TorchvisionResNet18()
    _randomise_batchnorms(model)
    from prunelora.models.inference import infer_plan

    example = torch.rand(2, 1, 16, 16)
    plan = infer_plan(model, example)
    pruned, removed = _pruned(model, plan, example)
    back = reinflate(pruned, copy.deepcopy(model), removed)
    assert check_exact(pruned, back, example) < 1e-5
    # an adapter's lora_A grows on its layer's input side, lora_B on its output side
    name = next(n for n, r in removed.items() if "out" in r and "in" in r)
    layer = pruned.get_submodule(name)
    r = 2
    tensors = {f"base_model.model.{name}.lora_A.weight": torch.ones(r, layer.in_channels, 3, 3),
               f"base_model.model.{name}.lora_B.weight": torch.ones(layer.out_channels, r, 1, 1)}
    grown = reinflated_state(tensors, removed)
    full = model.get_submodule(name)
    assert grown[f"base_model.model.{name}.lora_A.weight"].shape == (r, full.in_channels, 3, 3)
    assert grown[f"base_model.model.{name}.lora_B.weight"].shape == (full.out_channels, r, 1, 1)
    assert grown[f"base_model.model.{name}.lora_B.weight"][removed[name]["out"]].abs().sum() == 0
