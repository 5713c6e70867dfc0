"""The folded conv LoRA (one conv of W + s·BA, or one node per adapter: the low-rank form or the composed one)
computes exactly what PEFT's three-conv form does."""
import copy

import pytest
import torch
from peft.tuners.lora.layer import Conv2d as PeftConv2d

from prunelora.methods import dropout_conv
from prunelora.methods.dropout_conv import keep_mask, low_rank_pays
from prunelora.methods.lora import attach_lora, merged_copy
from prunelora.models import build_model, get_spec


def _pair(dropout: float = 0.0, width: int = 4, masked: bool = False, dropout_on: str | None = None):
    """(folded, PEFT's own, layers swapped). masked: every conv's odd output rows zero, as mask-mode pruning
    leaves them."""
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": width})
    if masked:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight[1::2] = 0
    plan = get_spec("resnet18").plan
    folded = attach_lora(copy.deepcopy(model), plan, dropout=dropout, dropout_on=dropout_on)
    plain = attach_lora(copy.deepcopy(model), plan, dropout=dropout, dropout_on=dropout_on)
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


def _forms(model, p: float) -> set[str]:
    """The forms the adapted layers of `model` run in, in training mode with dropout p."""
    return {module._form("default", p) for module in model.modules() if type(module).__name__ == "FoldedLoraConv2d"}


@pytest.mark.parametrize("width,forms", [(4, {"fold"}), (16, {"fold", "low_rank"})])
def test_folded_forward_and_gradients_match_peft(width, forms):
    """Without dropout: W + s·BA in one conv, and (at width 16, where the adapter is a small share of the layer) the
    low-rank node; both PEFT's value and gradients."""
    folded, plain, swapped = _pair(width=width)
    assert swapped == 16  # every adapted conv of the ResNet-18 blocks uses the folded layer
    assert _forms(folded, 0.0) == forms
    x = torch.rand(3, 3, 16, 16)
    out_folded, out_plain = folded(x), plain(x)
    torch.testing.assert_close(out_folded, out_plain, rtol=1e-4, atol=1e-5)
    out_folded.square().sum().backward()
    out_plain.square().sum().backward()
    grads_plain = dict(plain.named_parameters())
    compared = 0
    for name, param in folded.named_parameters():
        if param.grad is not None:
            # float32 sums in another order: tolerance relative to the gradient's scale
            torch.testing.assert_close(param.grad, grads_plain[name].grad, rtol=1e-3,
                                       atol=1e-4 * float(param.grad.abs().max()), msg=name)
            compared += "lora_" in name
    assert compared == 32  # lora_A and lora_B of 16 layers


@pytest.mark.parametrize("width", [4, 16])
def test_folded_model_merges_and_saves_like_peft(tmp_path, width):
    """The adapter saved from the folded layers loads with plain PEFT (no custom module registered) and gives the
    same eval-mode outputs, as does the merged copy."""
    from peft import PeftModel

    torch.manual_seed(0)
    base = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": width})
    folded, _, _ = _pair(dropout=0.1, width=width)
    x = torch.rand(2, 3, 16, 16)
    folded.eval()
    torch.testing.assert_close(merged_copy(folded)(x), folded(x), rtol=1e-4, atol=1e-5)
    folded.save_pretrained(str(tmp_path))
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
    loaded = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    assert not any(type(m).__name__ == "FoldedLoraConv2d" for m in loaded.modules())  # PEFT's own layers
    torch.testing.assert_close(loaded(x), folded(x), rtol=1e-4, atol=1e-5)


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


@pytest.mark.parametrize("width,forms", [(4, {"composed", "low_rank"}), (16, {"low_rank"})])
def test_dropout_on_the_adapter_input_matches_peft_value_and_gradient(monkeypatch, width, forms):
    """Training mode with the paper's dropout 0.1: one autograd node per layer (the low-rank form, or where r is not
    smaller than the layer the composed one) against PEFT's two convs on dropout(x) with the same mask: the same
    output and gradients."""
    folded, plain, swapped = _pair(dropout=0.1, width=width)
    assert swapped == 16 and _forms(folded, 0.1) == forms
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


@pytest.mark.parametrize("width,forms", [(4, {"composed", "low_rank"}), (16, {"low_rank"})])
def test_a_masked_frozen_base_runs_its_live_rows_with_peft_value_and_gradient(monkeypatch, width, forms):
    """PruneLoRA's default (mask mode, a frozen base with half its output rows zero): each node computes the base
    conv on the live rows alone and adds them into their channels; PEFT's output and gradients for the same
    mask, on every adapted layer."""
    folded, plain, _ = _pair(dropout=0.1, width=width, masked=True)
    assert _forms(folded, 0.1) == forms
    monkeypatch.setattr(dropout_conv, "draw_seed", lambda: 1234)
    for module in plain.modules():
        if hasattr(module, "lora_dropout"):
            module.lora_dropout["default"] = FixedMask(0.1, 1234)
    folded.train(), plain.train()
    calls = []
    add_base = dropout_conv._add_base_conv
    monkeypatch.setattr(dropout_conv, "_add_base_conv", lambda *a: calls.append(a[4] is not None) or add_base(*a))
    x = torch.rand(4, 3, 16, 16)
    out_f, grads_f = _forward_backward(folded, x)
    out_p, grads_p = _forward_backward(plain, x)
    assert calls == [True] * 16  # every adapted layer's node ran its base on the live rows
    torch.testing.assert_close(out_f, out_p, rtol=1e-4, atol=1e-5)
    assert grads_f.keys() == grads_p.keys() and sum("lora_" in n for n in grads_f) == 32
    for name, grad in grads_f.items():
        torch.testing.assert_close(grad, grads_p[name], rtol=1e-3, atol=1e-4 * float(grad.abs().max()), msg=name)
    layers = [m for m in folded.modules() if type(m).__name__ == "FoldedLoraConv2d"]
    for layer in layers:  # the nodes run on half the rows: the odd ones, which are zero, are skipped
        rows = layer._live_rows(layer.get_base_layer())
        assert rows is not None and rows.tolist() == list(range(0, layer.get_base_layer().out_channels, 2))


def test_the_live_rows_follow_the_weight_and_a_trained_or_dense_base_runs_whole():
    from prunelora.methods.dropout_conv import live_rows

    weight = torch.randn(8, 4, 3, 3)
    assert live_rows(weight) is None  # dense: nothing to skip
    weight[2:] = 0
    assert live_rows(weight).tolist() == [0, 1]
    assert live_rows(weight, torch.tensor([0.0, 0, 0, 1, 0, 0, 0, 0])).tolist() == [0, 1, 3]  # a bias keeps its row
    assert live_rows(weight, groups=2) is None and live_rows(torch.zeros(8, 4, 3, 3)) is None
    folded, _, _ = _pair(dropout=0.1, masked=True, dropout_on="rank")
    layer = next(m for m in folded.modules() if type(m).__name__ == "FoldedLoraConv2d")
    base = layer.get_base_layer()
    assert layer._live_rows(base) is not None
    with torch.no_grad():
        base.weight[1] = 1.0  # an edited weight is read as it is now
    assert 1 in layer._live_rows(base).tolist()
    base.weight.requires_grad_(True)  # a trained base computes every row (its gradient needs them)
    assert layer._live_rows(base) is None


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
    assert layer_f._form("default", 0.1) == "composed"
    x = torch.rand(8, 4, 16, 16, requires_grad=True)
    kept_f, kept_p = _saved_bytes(layer_f, x), _saved_bytes(layer_p, x)
    assert kept_p - kept_f >= x.numel() * 4  # PEFT keeps dropout(x) (floats) and its mask
    assert kept_f < x.numel()  # the node keeps the small composed update, not activations


def test_the_low_rank_node_keeps_only_its_r_channels():
    """Beyond x and the weights, the low-rank node keeps A(dropout(x)) (r channels at the output's size) and the
    scaled 1 x 1 weight: no dropped input, no mask; PEFT keeps dropout(x), its mask and A's output."""
    folded, plain, _ = _pair(dropout=0.1, width=16)
    layer_f = folded.get_submodule("base_model.model.layer1.0.conv1").train()
    layer_p = plain.get_submodule("base_model.model.layer1.0.conv1").train()
    assert layer_f._form("default", 0.1) == "low_rank" and layer_f.r["default"] == 8
    x = torch.rand(8, 16, 16, 16, requires_grad=True)
    kept_f, kept_p = _saved_bytes(layer_f, x), _saved_bytes(layer_p, x)
    hidden = 8 * 8 * 16 * 16 * 4  # batch x r x the output's 16 x 16, float32
    assert hidden <= kept_f <= hidden + layer_f.lora_B["default"].weight.numel() * 4
    assert kept_p - kept_f >= x.numel() * 4


@pytest.mark.parametrize("groups,stride", [(1, 1), (1, 2), (2, 1)])
def test_the_low_rank_node_is_peft_for_the_same_mask(groups, stride):
    """conv(x, W) + s·B(A(dropout(x))) written with autograd ops (PEFT's forward, the node's own mask) against the
    node: the same value and the same gradients for x, A and B; and draw by draw today's composed node's value."""
    from prunelora.methods.dropout_conv import DropoutDeltaConv, LowRankConv

    torch.manual_seed(0)
    x = torch.rand(3, 4, 7, 7, dtype=torch.double, requires_grad=True)
    weight = torch.randn(6, 4 // groups, 3, 3, dtype=torch.double)
    a = torch.randn(2, 4, 3, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(6, 2 // groups, 1, 1, dtype=torch.double, requires_grad=True)
    args = ((stride, stride), (1, 1), (1, 1), groups)
    out = LowRankConv.apply(x, weight, None, a, b, 1.5, 0.3, 11, *args)
    keep, scale = keep_mask(x, 0.3, 11)
    f = torch.nn.functional
    reference = f.conv2d(x, weight, None, *args) + 1.5 * f.conv2d(f.conv2d(x * keep * scale, a, None, *args[:3]), b,
                                                                  groups=groups)
    torch.testing.assert_close(out, reference)
    grads = torch.autograd.grad(out.square().sum(), (x, a, b))
    expected = torch.autograd.grad(reference.square().sum(), (x, a, b))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    if groups == 1:  # PEFT's composed update s·BA, the node the layer used before
        delta = 1.5 * f.conv2d(a.transpose(0, 1), b).transpose(0, 1)
        torch.testing.assert_close(DropoutDeltaConv.apply(x, weight, None, delta, 0.3, 11, *args), out)


@pytest.mark.parametrize("p,with_base", [(0.3, True), (0.3, False), (0.0, True)])
def test_the_low_rank_node_backward_is_its_forwards_derivative(p, with_base):
    from prunelora.methods.dropout_conv import LowRankConv

    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 6, dtype=torch.double, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.double, requires_grad=True) if with_base else None
    bias = torch.randn(4, dtype=torch.double, requires_grad=True) if with_base else None
    a = torch.randn(2, 3, 3, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, 2, 1, 1, dtype=torch.double, requires_grad=True)

    def node(*tensors):
        w, bb = (tensors[1], tensors[2]) if with_base else (None, None)
        return LowRankConv.apply(tensors[0], w, bb, tensors[-2], tensors[-1], 0.7, p, 7, (2, 2), (1, 1), (1, 1), 1)

    inputs = (x, weight, bias, a, b) if with_base else (x, a, b)
    assert torch.autograd.gradcheck(node, inputs)


@pytest.mark.parametrize("shape,p,low_rank", [
    ((64, 64, (3, 3)), 0.1, True),  # ResNet-18 width 64: the adapter is 14 % of the layer
    ((4, 4, (3, 3)), 0.1, False),  # r = 8 above the layer's 4 channels: the composed form is smaller
    ((64, 64, (3, 3)), 0.0, True),  # without dropout only a small adapter beats W + s·BA's weight gradient
    ((32, 32, (3, 3)), 0.0, False),  # 28 %
    ((256, 64, (1, 1)), 0.1, True)])  # a bottleneck's 1 x 1
def test_the_low_rank_form_is_chosen_where_it_costs_less(shape, p, low_rank):
    in_channels, out_channels, kernel = shape
    assert low_rank_pays(in_channels, out_channels, kernel, 8, 1, p) is low_rank


@pytest.mark.parametrize("layer,channels,form", [("layer1.0.conv1", 4, "composed"), ("layer4.1.conv2", 32, "low_rank")])
def test_dropout_distribution_matches_peft(layer, channels, form):
    """Over many independent masks, the adapted layer's output has PEFT's mean and spread (both nodes)."""
    folded, plain, _ = _pair(dropout=0.5)
    layer_f = folded.get_submodule(f"base_model.model.{layer}")
    layer_p = plain.get_submodule(f"base_model.model.{layer}")
    layer_f.train(), layer_p.train()
    assert layer_f._form("default", 0.5) == form
    x = torch.rand(2, channels, 8, 8)
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


@pytest.mark.parametrize("width", [4, 16])
def test_eval_mode_with_dropout_is_one_conv_and_equals_peft(width):
    folded, plain, _ = _pair(dropout=0.1, width=width)
    folded.eval(), plain.eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():  # evaluation: every layer one conv of W + s·BA
        assert _forms(folded, 0.0) == {"fold"}
        torch.testing.assert_close(folded(x), plain(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(merged_copy(folded)(x), folded(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-4, atol=1e-5)  # with gradients on, the same values


def test_rank_dropout_is_its_definition_and_its_own_derivative():
    """dropout_on="rank": conv(x, W) + s·B(dropout(A(x))), the mask on A's r output channels, value and gradients as
    autograd computes them from that definition with the node's mask."""
    from prunelora.methods.dropout_conv import RankDropoutConv

    torch.manual_seed(0)
    x = torch.rand(3, 4, 7, 7, dtype=torch.double, requires_grad=True)
    weight = torch.randn(6, 4, 3, 3, dtype=torch.double, requires_grad=True)
    a = torch.randn(2, 4, 3, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(6, 2, 1, 1, dtype=torch.double, requires_grad=True)
    args = ((2, 2), (1, 1), (1, 1), 1)
    out = RankDropoutConv.apply(x, weight, None, a, b, 1.5, 0.3, 11, *args)
    f = torch.nn.functional
    hidden = f.conv2d(x, a, None, *args[:3])
    keep, scale = keep_mask(hidden, 0.3, 11)
    reference = f.conv2d(x, weight, None, *args) + 1.5 * f.conv2d(hidden * keep * scale, b)
    torch.testing.assert_close(out, reference)
    for got, want in zip(torch.autograd.grad(out.square().sum(), (x, weight, a, b)),
                         torch.autograd.grad(reference.square().sum(), (x, weight, a, b))):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda *t: RankDropoutConv.apply(*t[:2], None, *t[2:], 0.7, 0.3, 5, *args),
                                    (x, weight, a, b))


def test_rank_dropout_keeps_peft_expectation_and_eval_outputs(tmp_path):
    """The rank placement's layer output has PEFT's mean over masks (not its spread: whole rank components drop),
    and in eval mode, or saved and loaded with plain PEFT, the same outputs."""
    from peft import PeftModel

    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": 16})
    plan = get_spec("resnet18").plan
    ranked = attach_lora(copy.deepcopy(model), plan, dropout=0.5, dropout_on="rank")
    _, plain, _ = _pair(dropout=0.5, width=16)
    for module in ranked.modules():
        if hasattr(module, "lora_B"):
            for lora_b in module.lora_B.values():
                torch.nn.init.normal_(lora_b.weight, std=0.2)
    plain.load_state_dict(ranked.state_dict())
    assert _forms(ranked, 0.5) == {"rank"}
    layer_r = ranked.get_submodule("base_model.model.layer2.0.conv2").train()
    layer_p = plain.get_submodule("base_model.model.layer2.0.conv2").train()
    x = torch.rand(2, 32, 8, 8)
    with torch.no_grad():
        torch.manual_seed(3)
        draws_r = torch.stack([layer_r(x) for _ in range(400)])
        torch.manual_seed(4)
        draws_p = torch.stack([layer_p(x) for _ in range(400)])
    standard_error = ((draws_r.var(0) + draws_p.var(0)) / 400).sqrt()
    assert ((draws_r.mean(0) - draws_p.mean(0)).abs() <= 5 * standard_error + 1e-6).all()  # same mean
    assert draws_r.std(0).mean() > 0.01  # dropout acts
    ranked.eval(), plain.eval()
    images = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(ranked(images), plain(images), rtol=1e-4, atol=1e-5)
    ranked.save_pretrained(str(tmp_path))
    loaded = PeftModel.from_pretrained(copy.deepcopy(model), str(tmp_path)).eval()
    torch.testing.assert_close(loaded(images), ranked(images), rtol=1e-4, atol=1e-5)


def test_an_unknown_dropout_place_is_refused():
    from prunelora.errors import UserError

    with pytest.raises(UserError, match="dropout place 'output'"):
        attach_lora(build_model("resnet18", 10, 3, 16, (0.5,) * 3, (0.25,) * 3, {"width": 4}),
                    get_spec("resnet18").plan, dropout_on="output")


def test_the_config_places_the_dropout(digits_splits):
    """unlearn.lora_dropout_on reaches the adapters PruneLoRA attaches; a wrong place is refused before anything
    runs; the default stays PEFT's input dropout and out of the run's fingerprint."""
    from prunelora.config import validate
    from prunelora.errors import UserError
    from prunelora.methods.surgery import with_adapters

    from ..helpers import smoke_config
    from .test_methods import build, context

    model = build("resnet18", digits_splits)
    ranked = with_adapters(copy.deepcopy(model), context("resnet18", digits_splits, lora_dropout_on="rank"))
    assert _forms(ranked, 0.1) == {"rank"}
    plain = with_adapters(copy.deepcopy(model), context("resnet18", digits_splits))
    assert "rank" not in _forms(plain, 0.1)
    with pytest.raises(UserError, match="unknown LoRA dropout place 'output'"):
        validate(smoke_config(lora_dropout_on="output"))
    assert "lora_dropout_on" not in smoke_config().identity()["unlearn"]
    assert smoke_config(lora_dropout_on="rank").identity()["unlearn"]["lora_dropout_on"] == "rank"


@pytest.mark.parametrize("node", ["low_rank", "rank", "composed"])
def test_each_node_on_live_rows_is_the_node_on_the_whole_zero_rowed_weight(node):
    """Every node told a frozen weight's live rows computes, value and input and adapter gradients, what it
    computes over the whole weight, whose other rows are zero."""
    from prunelora.methods.dropout_conv import DropoutDeltaConv, LowRankConv, RankDropoutConv, live_rows

    torch.manual_seed(0)
    x = torch.rand(3, 4, 7, 7, dtype=torch.double, requires_grad=True)
    weight, bias = torch.randn(6, 4, 3, 3, dtype=torch.double), torch.randn(6, dtype=torch.double)
    weight[[1, 4, 5]], bias[[1, 4, 5]] = 0, 0
    rows = live_rows(weight, bias)
    assert rows.tolist() == [0, 2, 3]
    a = torch.randn(2, 4, 3, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(6, 2, 1, 1, dtype=torch.double, requires_grad=True)
    args = ((2, 2), (1, 1), (1, 1), 1)
    if node == "composed":
        def run(w, c, r):
            return DropoutDeltaConv.apply(x, w, c, (b.flatten(1) @ a.flatten(1)).view(6, 4, 3, 3), 0.3, 7, *args, r)
    else:
        function = LowRankConv if node == "low_rank" else RankDropoutConv

        def run(w, c, r):
            return function.apply(x, w, c, a, b, 1.5, 0.3, 7, *args, r)
    whole, live = run(weight, bias, None), run(weight, bias, rows)
    torch.testing.assert_close(live, whole)
    for got, want in zip(torch.autograd.grad(live.square().sum(), (x, a, b)),
                         torch.autograd.grad(whole.square().sum(), (x, a, b))):
        torch.testing.assert_close(got, want)
