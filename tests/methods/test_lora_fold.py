"""The folded conv LoRA (one conv of W + s·BA) computes exactly what PEFT's three-conv form does."""
import copy

import torch
from peft.tuners.lora.layer import Conv2d as PeftConv2d

from prunelora.methods.lora import attach_lora, merged_copy
from prunelora.models import build_model, get_spec


def _pair():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": 4})
    plan = get_spec("resnet18").plan
    folded = attach_lora(copy.deepcopy(model), plan, dropout=0.0)
    plain = attach_lora(copy.deepcopy(model), plan, dropout=0.0)
    swapped = 0
    for module in plain.modules():
        if type(module).__name__ == "FoldedLoraConv2d":
            module.__class__ = PeftConv2d  # PEFT's own forward: base conv + B(A(x))
            swapped += 1
    for module in folded.modules():
        if hasattr(module, "lora_B"):
            for lora_b in module.lora_B.values():
                torch.nn.init.normal_(lora_b.weight, std=0.2)  # a non-zero update, or the test is trivial
    plain.load_state_dict(folded.state_dict())
    return folded, plain, swapped


def test_folded_forward_and_gradients_match_peft():
    folded, plain, swapped = _pair()
    assert swapped == 16  # every adapted conv of the ResNet-18 blocks uses the folded layer
    x = torch.rand(3, 3, 16, 16)
    out_folded, out_plain = folded(x), plain(x)
    torch.testing.assert_close(out_folded, out_plain, rtol=1e-4, atol=1e-5)
    out_folded.square().sum().backward()
    out_plain.square().sum().backward()
    grads_plain = dict(plain.named_parameters())
    compared = 0
    for name, param in folded.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(param.grad, grads_plain[name].grad, rtol=1e-3, atol=1e-5)
            compared += "lora_" in name
    assert compared == 32  # lora_A and lora_B of 16 layers


def test_folded_model_merges_and_saves_like_peft(tmp_path):
    folded, plain, _ = _pair()
    x = torch.rand(2, 3, 16, 16)
    folded.eval()
    torch.testing.assert_close(merged_copy(folded)(x), folded(x), rtol=1e-4, atol=1e-5)
    folded.save_pretrained(str(tmp_path))
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()


def test_dropout_keeps_peft_layers():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": 4})
    wrapped = attach_lora(model, get_spec("resnet18").plan, dropout=0.1)
    kinds = {type(m).__name__ for m in wrapped.modules() if hasattr(m, "lora_B")}
    assert kinds == {"Conv2d"}
