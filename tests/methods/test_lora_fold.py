"""The folded conv LoRA (one conv of W + s·BA; with dropout, two) computes exactly what PEFT's three-conv form does."""
import copy

import pytest
import torch
from peft.tuners.lora.layer import Conv2d as PeftConv2d

from prunelora.methods import dropout_conv
from prunelora.methods.dropout_conv import keep_mask
from prunelora.methods.lora import attach_lora, merged_copy
from prunelora.models import build_model, get_spec


def _pair(dropout: float = 0.0):
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": 4})
    plan = get_spec("resnet18").plan
    folded = attach_lora(copy.deepcopy(model), plan, dropout=dropout)
    plain = attach_lora(copy.deepcopy(model), plan, dropout=dropout)
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


class FixedMask(torch.nn.Module):
    """PEFT's dropout replaced by the mask the folded layer draws for `seed`."""

    def __init__(self, p: float, seed: int):
        super().__init__()
        self.p, self.seed = p, seed

    def forward(self, x):
        keep, scale = keep_mask(x, self.p, self.seed)
        return x * keep * scale


def _forward_backward(model, x):
    out = model(x)
    out.square().sum().backward()
    return out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_dropout_on_the_adapter_input_matches_peft_value_and_gradient(monkeypatch):
    """Training mode with the paper's dropout 0.1: one autograd node (conv on x, conv on dropout(x)) against
    PEFT's two convs on dropout(x) with the same mask: the same output and gradients."""
    folded, plain, swapped = _pair(dropout=0.1)
    assert swapped == 16
    monkeypatch.setattr(dropout_conv, "draw_seed", lambda: 1234)
    for module in plain.modules():
        if hasattr(module, "lora_dropout"):
            module.lora_dropout["default"] = FixedMask(0.1, 1234)
    folded.train(), plain.train()
    x = torch.rand(4, 3, 16, 16)
    out_f, grads_f = _forward_backward(folded, x)
    out_p, grads_p = _forward_backward(plain, x)
    torch.testing.assert_close(out_f, out_p, rtol=1e-4, atol=1e-5)
    assert grads_f.keys() == grads_p.keys() and sum("lora_" in n for n in grads_f) == 32
    for name, grad in grads_f.items():  # float32 sums in another order: tolerance relative to the gradient's scale
        torch.testing.assert_close(grad, grads_p[name], rtol=1e-3, atol=1e-4 * float(grad.abs().max()), msg=name)
    # dropout really acts: another mask gives another output
    monkeypatch.setattr(dropout_conv, "draw_seed", lambda: 99)
    other, _ = _forward_backward(folded, x)
    assert not torch.allclose(other, out_f)


@pytest.mark.parametrize("with_base", [True, False])
def test_the_dropout_node_backward_is_its_forwards_derivative(with_base):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 6, dtype=torch.double, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.double, requires_grad=True) if with_base else None
    bias = torch.randn(4, dtype=torch.double, requires_grad=True) if with_base else None
    delta = torch.randn(4, 3, 3, 3, dtype=torch.double, requires_grad=True)

    def node(*args):
        x, delta = args[0], args[-1]
        w, b = (args[1], args[2]) if with_base else (None, None)
        return dropout_conv.DropoutDeltaConv.apply(x, w, b, delta, 0.3, 7, (2, 2), (1, 1), (1, 1), 1)

    inputs = (x, weight, bias, delta) if with_base else (x, delta)
    assert torch.autograd.gradcheck(node, inputs)


def test_the_mask_drops_p_and_keeps_the_expectation():
    like = torch.empty(1 << 20)
    keep, scale = keep_mask(like, 0.1, seed=5)
    assert keep.dtype == torch.bool and keep.shape == like.shape
    assert abs(1 - keep.float().mean().item() - 0.1) < 0.002  # binomial sd 3e-4
    assert keep.float().mean().item() * scale == pytest.approx(1.0, abs=0.003)
    again, _ = keep_mask(like, 0.1, seed=5)
    assert torch.equal(keep, again) and not torch.equal(keep, keep_mask(like, 0.1, seed=6)[0])


@pytest.mark.parametrize("rows,world", [(7, 2), (8, 2), (5, 3)])
def test_a_shards_mask_is_its_rows_of_the_global_batchs_mask(rows, world):
    """Under torchrun each rank's dropout mask is the single process's, cut to its rows of the global batch."""
    from prunelora.methods.dropout_conv import drop_mask

    batch = torch.empty(rows, 3, 5, 4)
    whole, scale = drop_mask(batch, 0.1, seed=11)
    start = 0
    for rank in range(world):
        count = rows // world + (1 if rank < rows % world else 0)
        mine, same_scale = drop_mask(batch[start:start + count], 0.1, seed=11, shard=(rows, start))
        assert torch.equal(mine, whole[start:start + count]) and same_scale == scale
        start += count


def _saved_bytes(layer, x) -> int:
    """Bytes that autograd keeps for backward through `layer`, beyond x and the parameters."""
    own = {p.untyped_storage().data_ptr() for p in layer.parameters()} | {x.untyped_storage().data_ptr()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x).sum().backward()
    return sum(saved.values())


def test_the_dropout_node_keeps_neither_the_dropped_input_nor_its_mask():
    folded, plain, _ = _pair(dropout=0.1)
    layer_f = folded.get_submodule("base_model.model.layer1.0.conv1").train()
    layer_p = plain.get_submodule("base_model.model.layer1.0.conv1").train()
    x = torch.rand(8, 4, 16, 16, requires_grad=True)
    kept_f, kept_p = _saved_bytes(layer_f, x), _saved_bytes(layer_p, x)
    assert kept_p - kept_f >= x.numel() * 4  # PEFT keeps dropout(x) (floats) and its mask
    assert kept_f < x.numel()  # the node keeps the small composed update, not activations


def test_dropout_distribution_matches_peft():
    """Over many independent masks, the adapted layer's output has PEFT's mean and spread."""
    folded, plain, _ = _pair(dropout=0.5)
    layer_f = folded.get_submodule("base_model.model.layer1.0.conv1")
    layer_p = plain.get_submodule("base_model.model.layer1.0.conv1")
    layer_f.train(), layer_p.train()
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        torch.manual_seed(3)
        draws_f = torch.stack([layer_f(x) for _ in range(400)])
        torch.manual_seed(4)  # independent masks: equal in distribution, not draw by draw
        draws_p = torch.stack([layer_p(x) for _ in range(400)])
    assert not torch.allclose(draws_f[0], draws_p[0])
    n = draws_f.shape[0]
    standard_error = ((draws_f.var(0) + draws_p.var(0)) / n).sqrt()
    assert ((draws_f.mean(0) - draws_p.mean(0)).abs() <= 5 * standard_error + 1e-6).all()  # same mean
    assert draws_f.std(0).mean() == pytest.approx(float(draws_p.std(0).mean()), rel=0.1)  # same spread
    assert draws_f.std(0).mean() > 0.01  # and dropout really varies the output


def test_eval_mode_with_dropout_is_one_conv_and_equals_peft():
    folded, plain, _ = _pair(dropout=0.1)
    folded.eval(), plain.eval()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(merged_copy(folded)(x), folded(x), rtol=1e-4, atol=1e-5)
