"""Forget-aware pruning of image models: channels ranked by |gradient x weight| on the forget set's loss."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelora.data import ImageSet, to_float
from prunelora.errors import UserError
from prunelora.methods.pruning import matching_modules, removal_reason, remove_channels, saliency_channel_masks
from prunelora.methods.surgery import prune
from prunelora.models import get_spec

from .test_methods import ARGS, context, state_copy, zero_rows


def forget_of(splits, n: int = 40) -> ImageSet:
    return splits.forget_train if len(splits.forget_train) else splits.retain_train.subset(torch.arange(n))


def saliency_by_hand(model: nn.Module, forget: ImageSet, layers: list[str]) -> dict[str, torch.Tensor]:
    """Per output channel of each layer: sum |dL/dw * w| for L the forget set's mean cross-entropy (eval mode)."""
    probe = copy.deepcopy(model).eval()
    for p in probe.parameters():
        p.requires_grad_(True)
    loss = nn.functional.cross_entropy(probe(to_float(forget.images)), forget.labels)
    loss.backward()
    modules = dict(probe.named_modules())
    return {n: (modules[n].weight.grad * modules[n].weight).abs().flatten(1).sum(1).detach() for n in layers}


@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_saliency_masks_zero_the_least_salient_channels_as_many_as_l2(digits_splits, originals, name):
    model = copy.deepcopy(originals[name])
    before = state_copy(model)
    forget = forget_of(digits_splits)
    plan = get_spec(name, ARGS[name]).plan
    layers = list(matching_modules(model, plan.prune_layers))
    expected_scores = saliency_by_hand(model, forget, layers)
    masks = saliency_channel_masks(model, plan.prune_layers, 0.5, forget, batch_size=16)
    differs_from_l2 = False
    for layer in layers:
        module = model.get_submodule(layer)
        scores = expected_scores[layer]
        pruned = round(0.5 * len(scores))
        order = torch.argsort(scores)
        assert zero_rows(module.weight) >= set(order[:pruned].tolist())  # the least salient went
        assert masks.rows[layer].sum().item() == len(scores) - pruned  # as many as the L2 rule prunes
        kept = masks.rows[layer]
        assert torch.equal(module.weight.detach()[kept], before[f"{layer}.weight"][kept])
        norms = before[f"{layer}.weight"].flatten(1).norm(dim=1)
        differs_from_l2 |= set(torch.argsort(norms)[:pruned].tolist()) != set(order[:pruned].tolist())
    assert differs_from_l2  # a forget-aware choice, not the L2 one under another name
    assert all(p.grad is None for p in model.parameters())  # the probe's gradients are not left behind


def test_saliency_scoring_leaves_batch_norm_statistics_and_grad_flags_alone(digits_splits, originals):
    model = copy.deepcopy(originals["resnet18"])
    for p in model.parameters():
        p.requires_grad_(False)
    before = state_copy(model)
    plan = get_spec("resnet18", ARGS["resnet18"]).plan
    saliency_channel_masks(model, plan.prune_layers, 0.5, forget_of(digits_splits), batch_size=16)
    assert not any(p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        if "running" in key:
            assert torch.equal(value, before[key]), key


def test_remove_mode_with_saliency_removes_as_many_channels(digits_splits, originals):
    plan = get_spec("resnet18", ARGS["resnet18"]).plan
    example = to_float(digits_splits.retain_train.images[:2])
    l2_model, sal_model = copy.deepcopy(originals["resnet18"]), copy.deepcopy(originals["resnet18"])
    l2_counts, _ = remove_channels(l2_model, plan.prune_layers, 0.5, plan.head, example)
    sal_counts, removed = remove_channels(sal_model, plan.prune_layers, 0.5, plan.head, example,
                                          forget_of(digits_splits), batch_size=16)
    assert sal_counts == l2_counts
    assert all(p.grad is None for p in sal_model.parameters())
    l2_shapes = {k: v.shape for k, v in l2_model.state_dict().items()}
    assert {k: v.shape for k, v in sal_model.state_dict().items()} == l2_shapes
    assert any(not torch.equal(a, b) for a, b in zip(l2_model.state_dict().values(), sal_model.state_dict().values()))


def test_saliency_without_a_forget_set_is_a_user_error(digits_splits, originals):
    ctx = context("resnet18", digits_splits, prune_score="saliency")  # retain-only context: no forget set
    with pytest.raises(UserError, match="prune score 'saliency'.*no forget set"):
        prune(copy.deepcopy(originals["resnet18"]), ctx)


def test_prunelora_with_saliency_prunes_by_the_forget_set_end_to_end(digits_splits, originals):
    from prunelora.runner import method_context, run_method

    from ..helpers import smoke_config

    spec = get_spec("resnet18", ARGS["resnet18"])
    config = smoke_config(batch_size=32, epochs=[1], prune_score="saliency", prune_mode="mask")
    forget = forget_of(digits_splits)
    ctx = method_context(config, spec.plan, spec.family, None, digits_splits.retain_train, forget)
    run = run_method("prunelora", originals["resnet18"], digits_splits.retain_train, ctx, seed=0, progress=False)
    model = run.snapshots[-1].model
    expected = saliency_by_hand(originals["resnet18"], forget, ["stem.0"])["stem.0"]
    pruned = set(torch.argsort(expected)[:round(0.5 * len(expected))].tolist())
    assert zero_rows(model.get_submodule("stem.0").weight) >= pruned  # the stem has no adapter: its zeros stay


class GroupNormNet(nn.Module):
    """A conv net whose norms pool channels: zeros written back change every group's statistics."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8)
        self.conv2, self.norm2 = nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.norm1(self.conv1(x)))
        x = torch.relu(self.norm2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def test_auto_mode_removes_the_resnets_channels_and_masks_the_vit(digits_splits, originals):
    """The default prune mode takes channels out where the write-back is exact (a conv net with per-channel batch
    norms), and keeps the paper's masks where removing would shrink the residual stream."""
    masks, info, removed = prune(copy.deepcopy(originals["resnet18"]), context("resnet18", digits_splits))
    assert masks is None and removed and info["prune_mode"] == "remove"
    assert info["params_after"] < info["params_before"]
    assert info["prune_mode_chosen_by"].startswith("auto: remove")
    masks, info, removed = prune(copy.deepcopy(originals["vit"]), context("vit", digits_splits))
    assert masks is not None and removed is None and info["prune_mode"] == "mask"
    assert "residual stream" in info["prune_mode_chosen_by"]
    _, explicit, _ = prune(copy.deepcopy(originals["resnet18"]), context("resnet18", digits_splits, prune_mode="mask"))
    assert explicit["prune_mode"] == "mask" and "prune_mode_chosen_by" not in explicit


def test_auto_mode_masks_a_conv_net_whose_group_norms_make_removal_inexact(digits_splits):
    torch.manual_seed(0)
    model = GroupNormNet()
    example = to_float(digits_splits.retain_train.images[:4])
    before = state_copy(model)
    reason = removal_reason(model, r"conv\d", 0.5, "fc", example)
    assert reason is not None and ("group norm" in reason or "torch-pruning" in reason)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the dry run used a copy
    from prunelora.models import LayerPlan

    ctx = context("resnet18", digits_splits)
    ctx.plan = LayerPlan(prune_layers=r"conv\d", lora_layers=r"conv\d", train_modules=("fc",), head="fc")
    masks, info, removed = prune(model, ctx)
    assert masks is not None and removed is None and info["prune_mode"] == "mask"
    assert zero_rows(model.conv1.weight) and len(zero_rows(model.conv1.weight)) == 4


def test_auto_mode_keeps_the_bn_resnet_exact_when_written_back(digits_splits, originals):
    plan = get_spec("resnet18", ARGS["resnet18"]).plan
    example = to_float(digits_splits.retain_train.images[:4])
    assert removal_reason(originals["resnet18"], plan.prune_layers, 0.5, plan.head, example) is None


def test_auto_mode_keeps_masks_where_the_lora_update_regrows_pruned_channels(digits_splits, originals):
    """PruneLoRA's dense LoRA update (the paper's) regrows pruned channels, which removed channels cannot: auto keeps
    its masks; with keep_sparsity the pruned rows stay zero, the same training as the smaller network, so it
    removes."""
    from prunelora.methods.surgery import pruned_adapted

    regrowing = pruned_adapted(originals["resnet18"], context("resnet18", digits_splits))
    assert regrowing.info["prune_mode"] == "mask" and regrowing.removed is None
    assert "regrows pruned channels" in regrowing.info["prune_mode_chosen_by"]
    kept = pruned_adapted(originals["resnet18"], context("resnet18", digits_splits, keep_sparsity=True))
    assert kept.info["prune_mode"] == "remove" and kept.removed


def test_removal_verdicts_are_kept_per_architecture_and_bounded(digits_splits, monkeypatch):
    """One dry run per architecture, and a long-lived process keeps at most _KEPT_VERDICTS of them."""
    from prunelora.methods import pruning

    runs = []
    monkeypatch.setattr(pruning, "_REMOVAL_VERDICTS", type(pruning._REMOVAL_VERDICTS)())
    monkeypatch.setattr(pruning, "_KEPT_VERDICTS", 2)
    monkeypatch.setattr(pruning, "_dry_run", lambda *args: runs.append(args) or (None, None))
    example = to_float(digits_splits.retain_train.images[:4])
    nets = [nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(c))
            for c in (4, 8, 16)]
    for net in nets:
        net(example)
    for net in nets + nets[-1:]:
        assert removal_reason(net, r"[02]", 0.5, "4", example) is None
    assert len(runs) == 3  # the repeated architecture was not dry-run again
    assert len(pruning._REMOVAL_VERDICTS) == 2
    removal_reason(nets[0], r"[02]", 0.5, "4", example)  # the oldest went: it is dry-run anew
    assert len(runs) == 4 and len(pruning._REMOVAL_VERDICTS) == 2
