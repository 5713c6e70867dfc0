"""The five unlearning methods: which parameters train, what pruning zeroes, what stays pruned, adapters that run."""
from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

from prunelora import storage
from prunelora.data import to_float
from prunelora.errors import UserError
from prunelora.methods import METHODS, get_method
from prunelora.methods.pruning import l2_channel_masks, matching_modules
from prunelora.models import build_model, get_spec
from prunelora.registry import IMAGE
from prunelora.runner import method_context, run_method
from prunelora.train import fit

from ..helpers import smoke_config

ARGS = {"resnet18": {"width": 4}, "vit": {"depth": 2, "dim": 32, "heads": 2, "mlp_dim": 64}}
FAMILY = {"resnet18": "resnet", "vit": "vit"}


def build(name: str, splits, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    c, size, _ = splits.image_shape
    return build_model(name, splits.num_classes, c, size, splits.mean, splits.std, ARGS[name])


def context(name: str, splits, **unlearn):
    unlearn.setdefault("batch_size", 32)
    unlearn.setdefault("epochs", [2])
    config = smoke_config(**unlearn)
    spec = get_spec(name, ARGS[name])
    return method_context(config, spec.plan, spec.family, lambda: build(name, splits, seed=123), splits.retain_train)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


_RUNS: dict = {}


def run_of(name, method, splits, originals, **unlearn):
    """run_method on the shared original, memoised within the module (each run takes about a second)."""
    key = (name, method, repr(sorted({"cache_prefix": True, **unlearn}.items())))
    if key not in _RUNS:
        ctx = context(name, splits, **unlearn)
        _RUNS[key] = run_method(method, originals[name], splits.retain_train, ctx, seed=0,
                                cache_prefix=ctx.unlearn.cache_prefix, progress=False)
    return _RUNS[key]


def expected_pruned_rows(weight: torch.Tensor, amount: float) -> set[int]:
    norms = weight.detach().flatten(1).norm(dim=1)
    k = round(amount * weight.shape[0])
    order = torch.argsort(norms)
    if 0 < k < len(norms):  # the choice must be unambiguous for the test to mean something
        assert norms[order[k]] > norms[order[k - 1]]
    return set(order[:k].tolist())


def zero_rows(weight: torch.Tensor) -> set[int]:
    return set(torch.nonzero(weight.detach().flatten(1).abs().sum(dim=1) == 0).flatten().tolist())


# -- registry ---------------------------------------------------------------------------------------------

def test_registry_holds_the_papers_paradigms_then_the_baselines():
    methods = METHODS.of(IMAGE)
    assert list(methods)[:5] == ["retrain", "finetune", "prune-finetune", "lora", "prunelora"]
    assert [m for m in methods if methods[m].paper] == list(methods)[:5]
    assert {"ga", "neggrad+", "rl", "ft-l1", "salun", "scrub", "logit-mask"} <= set(methods)
    assert get_method("retrain").exact and not get_method("lora").exact
    with pytest.raises(UserError, match="unknown method 'sallun'"):
        get_method("sallun")
    point = get_method("salun@prune+lora")
    assert (point.surgery, point.objective, point.prunes, point.adapts) == ("prune+lora", "salun", True, True)
    assert point.label == "SalUn@PruneLoRA"
    for bad in ("salun@reinit", "salun@graft", "sgd@lora"):
        with pytest.raises(UserError, match="unknown (method|surgery|objective)"):
            get_method(bad)


# -- trainable parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "vit"])
@pytest.mark.parametrize("method", ["finetune", "prune-finetune"])
def test_full_methods_train_every_parameter(digits_splits, originals, name, method):
    original = originals[name]
    before = state_copy(original)
    prepared = get_method(method).prepare(original, context(name, digits_splits))
    params = list(prepared.model.parameters())
    assert params and all(p.requires_grad for p in params)
    assert prepared.model is not original
    assert len(params) == len(list(original.parameters()))
    # the original model is never modified (pruning works on a copy)
    after = original.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_retrain_trains_a_fresh_model(digits_splits, originals, name):
    original = originals[name]
    prepared = get_method("retrain").prepare(original, context(name, digits_splits))
    assert all(p.requires_grad for p in prepared.model.parameters())
    assert prepared.epochs == [smoke_config().pretrain.epochs]
    fresh, orig = prepared.model.state_dict(), original.state_dict()
    assert set(fresh) == set(orig)
    differing = [k for k in orig if orig[k].is_floating_point() and not torch.equal(fresh[k], orig[k])]
    assert any(k.endswith("weight") for k in differing)
    assert prepared.optim.schedule == "cosine"  # the original's recipe, not the unlearning one


@pytest.mark.parametrize("method", ["lora", "prunelora"])
def test_resnet_lora_trains_only_adapters_and_the_head(digits_splits, originals, method):
    original = originals["resnet18"]
    prepared = get_method(method).prepare(original, context("resnet18", digits_splits))
    names = trainable_names(prepared.model)
    for n in names:
        assert ("lora_A" in n or "lora_B" in n) or ".fc.modules_to_save." in n, n
    head = [n for n in names if ".fc.modules_to_save." in n]
    assert sorted(n.rsplit(".", 1)[1] for n in head) == ["bias", "weight"]
    # one adapter (A and B) on each residual-block conv the plan names, and nowhere else
    plan = get_spec("resnet18", ARGS["resnet18"]).plan
    targets = {n for n, m in original.named_modules() if isinstance(m, nn.Conv2d) and re.fullmatch(plan.lora_layers, n)}
    assert len(targets) == 16  # 4 stages x 2 blocks x 2 convs
    adapted = {re.sub(r"^base_model\.model\.|\.lora_[AB]\..*$", "", n) for n in names if "lora_" in n}
    assert adapted == targets
    trainable = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in prepared.model.parameters()) / 2


@pytest.mark.parametrize("method", ["lora", "prunelora"])
def test_vit_lora_trains_only_last_out_proj_adapter_and_head_adapter(digits_splits, originals, method):
    prepared = get_method(method).prepare(originals["vit"], context("vit", digits_splits))
    names = trainable_names(prepared.model)
    assert names and all("lora_A" in n or "lora_B" in n for n in names), names
    adapted = {re.sub(r"^base_model\.model\.|\.lora_[AB]\..*$", "", n) for n in names}
    assert adapted == {"blocks.1.attn.out_proj", "head"}


# -- structured L2 pruning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "vit"])
@pytest.mark.parametrize("amount", [0.5, 0.25])
def test_l2_masks_zero_exactly_the_lowest_norm_rows(originals, name, amount):
    model = copy.deepcopy(originals[name])
    before = state_copy(model)
    plan = get_spec(name, ARGS[name]).plan
    masks = l2_channel_masks(model, plan.prune_layers, amount)
    layers = matching_modules(model, plan.prune_layers)
    assert set(masks.rows) == set(layers)
    total = 0
    for layer_name, module in layers.items():
        old = before[f"{layer_name}.weight"]
        expected = expected_pruned_rows(old, amount)
        assert zero_rows(module.weight) == expected, layer_name
        kept = [i for i in range(old.shape[0]) if i not in expected]
        assert torch.equal(module.weight.detach()[kept], old[kept])  # others untouched
        assert masks.rows[layer_name].tolist() == [i not in expected for i in range(old.shape[0])]
        assert not hasattr(module, "weight_mask") and not hasattr(module, "weight_orig")  # pruning made permanent
        total += len(expected)
    assert masks.pruned_channels() == total > 0
    # layers outside the pattern are untouched
    for key, value in model.state_dict().items():
        if not any(key == f"{n}.weight" for n in layers):
            assert torch.equal(value, before[key]) or "running" in key or "num_batches" in key, key


def test_prune_amount_is_per_layer(originals):
    model = copy.deepcopy(originals["resnet18"])
    plan = get_spec("resnet18", ARGS["resnet18"]).plan
    l2_channel_masks(model, plan.prune_layers, 0.5)
    for layer_name, module in matching_modules(model, plan.prune_layers).items():
        assert len(zero_rows(module.weight)) == module.weight.shape[0] // 2, layer_name


def test_layer_pattern_matching_nothing_is_a_user_error(originals):
    with pytest.raises(UserError, match="no Conv2d or Linear layer matches"):
        l2_channel_masks(copy.deepcopy(originals["resnet18"]), r"nothing\.here", 0.5)


def pruned_rows_of(original: nn.Module, name: str, amount: float = 0.5) -> dict[str, set[int]]:
    plan = get_spec(name, ARGS[name]).plan
    return {n: expected_pruned_rows(m.weight, amount) for n, m in matching_modules(original, plan.prune_layers).items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_prune_finetune_keeps_pruned_weights_zero_through_adam(digits_splits, originals, name):
    expected = pruned_rows_of(originals[name], name)
    run = run_of(name, "prune-finetune", digits_splits, originals, prune_mode="mask")  # the paper's masks
    assert run.info["pruned_channels"] == sum(len(v) for v in expected.values())
    orig_state = originals[name].state_dict()
    for model in [run.prepared.model] + [s.model for s in run.snapshots]:
        modules = dict(model.named_modules())
        moved = 0
        for layer_name, rows in expected.items():
            weight = modules[layer_name].weight.detach()
            assert zero_rows(weight) >= rows, layer_name
            kept = [i for i in range(weight.shape[0]) if i not in rows]
            moved += int(not torch.equal(weight[kept], orig_state[f"{layer_name}.weight"][kept]))
        assert moved > 0  # the kept weights did train


def test_without_the_mask_adam_regrows_pruned_channels(digits_splits, originals):
    """Control for the test above (FINDINGS trap 3): the same training without after_step regrows rows."""
    ctx = context("resnet18", digits_splits)
    prepared = get_method("prune-finetune").prepare(originals["resnet18"], ctx)
    expected = pruned_rows_of(originals["resnet18"], "resnet18")
    fit(prepared.model, digits_splits.retain_train, prepared.optim, 1, seed=0, after_step=None, progress=False)
    modules = dict(prepared.model.named_modules())
    regrown = sum(len(rows - zero_rows(modules[n].weight)) for n, rows in expected.items())
    assert regrown > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_keep_sparsity_keeps_merged_pruned_rows_zero(digits_splits, originals, name):
    expected = pruned_rows_of(originals[name], name)
    run = run_of(name, "prunelora", digits_splits, originals, keep_sparsity=True, prune_mode="mask")
    assert run.info["keep_sparsity"] is True
    for snap in run.snapshots:
        modules = dict(snap.model.named_modules())
        assert not any("lora_" in n for n in modules)  # merged: a plain model
        for layer_name, rows in expected.items():
            assert zero_rows(modules[layer_name].weight) >= rows, layer_name
    # and the adapters did learn something in the kept rows
    assert any(float(m.weight.detach().abs().sum()) > 0 for n, m in run.prepared.model.named_modules()
               if re.search(r"lora_B\.default$", n))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_without_keep_sparsity_the_merged_update_regrows_pruned_rows(digits_splits, originals, name):
    expected = pruned_rows_of(originals[name], name)
    run = run_of(name, "prunelora", digits_splits, originals, keep_sparsity=False, prune_mode="mask")
    assert run.info["keep_sparsity"] is False
    modules = dict(run.snapshots[-1].model.named_modules())
    plan = get_spec(name, ARGS[name]).plan
    regrown = {n: rows - zero_rows(modules[n].weight) for n, rows in expected.items()}
    assert any(regrown[n] for n in regrown if re.fullmatch(plan.lora_layers, n))
    # layers without an adapter are frozen, so they stay pruned
    assert not any(regrown[n] for n in regrown if not re.fullmatch(plan.lora_layers, n))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vit"])
@pytest.mark.parametrize("method", ["lora", "prunelora"])
@pytest.mark.parametrize("cache_prefix", [True, False])
def test_every_lora_b_moves_away_from_zero(digits_splits, originals, name, method, cache_prefix):
    """FINDINGS trap 1: each adapter, the ViT's attention out_proj included, must receive gradient."""
    run = run_of(name, method, digits_splits, originals, cache_prefix=cache_prefix)
    lora_b = {n: m.weight for n, m in run.prepared.model.named_modules() if re.search(r"lora_B\.default$", n)}
    assert len(lora_b) == (16 if name == "resnet18" else 2)
    if name == "vit":
        assert any("blocks.1.attn.out_proj" in n for n in lora_b)
        if cache_prefix:
            assert run.info.get("prefix_cache", {}).get("prefix_stages", 0) >= 2  # the cached path did run
    still_zero = [n for n, w in lora_b.items() if float(w.detach().abs().max()) == 0.0]
    assert still_zero == []


def test_lora_methods_deliver_a_merged_model_per_budget(digits_splits, originals):
    run = run_of("vit", "lora", digits_splits, originals, epochs=[1, 2])
    assert [s.epochs for s in run.snapshots] == [1, 2]
    a, b = run.snapshots
    assert set(a.model.state_dict()) == set(originals["vit"].state_dict())  # same keys as the plain model
    x = to_float(digits_splits.test_retain.images[:8])
    with torch.no_grad():
        assert not torch.allclose(a.model.eval()(x), b.model.eval()(x))  # snapshots are copies, not one model
    assert run.trainable_params < run.total_params


# -- remove mode ------------------------------------------------------------------------------------------------

def _meta(name, splits):
    c, size, _ = splits.image_shape
    return {"model": name, "model_args": ARGS[name], "num_classes": splits.num_classes, "in_channels": c,
            "image_size": size, "mean": list(splits.mean), "std": list(splits.std), "dataset": "digits"}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prune-finetune", "prunelora"])
def test_remove_mode_shrinks_convs_runs_and_round_trips_through_safetensors(tmp_path, digits_splits, originals, method):
    original = originals["resnet18"]
    run = run_of("resnet18", method, digits_splits, originals, prune_mode="remove", epochs=[1])
    assert run.info["prune_mode"] == "remove"
    assert run.info["params_after"] < 0.6 * run.info["params_before"]
    model = run.snapshots[-1].model
    orig_convs = {n: m for n, m in original.named_modules() if isinstance(m, nn.Conv2d)}
    new_convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(orig_convs) == set(new_convs)
    assert new_convs["stem.0"].out_channels == 2 and orig_convs["stem.0"].out_channels == 4
    assert new_convs["layer4.1.conv2"].weight.shape[0] < orig_convs["layer4.1.conv2"].weight.shape[0]
    assert model.fc.out_features == 10  # the head keeps its classes
    x = to_float(digits_splits.test_retain.images[:16])
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (16, 10) and torch.isfinite(out).all()

    path = tmp_path / "pruned.safetensors"
    storage.save_model(model, path, {**_meta("resnet18", digits_splits), **run.info})  # as the pipeline saves it
    loaded, meta = storage.load_model(path)
    assert meta["model"] == "resnet18"
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in loaded.state_dict().items()} == shapes
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def test_remove_mode_on_the_vit_is_a_user_error(digits_splits, originals):
    ctx = context("vit", digits_splits, prune_mode="remove")
    with pytest.raises(UserError, match="prune mode 'remove' cannot take out the outputs"):
        get_method("prune-finetune").prepare(originals["vit"], ctx)


# -- the folded conv LoRA (no dropout; its equivalence to PEFT is tested in test_lora_fold.py) ---------------

@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "prunelora"])
def test_every_folded_conv_lora_b_moves_away_from_zero(digits_splits, originals, method):
    run = run_of("resnet18", method, digits_splits, originals, lora_dropout=0.0)
    lora_b = {n: m.weight for n, m in run.prepared.model.named_modules() if re.search(r"lora_B\.default$", n)}
    assert len(lora_b) == 16
    assert [n for n, w in lora_b.items() if float(w.detach().abs().max()) == 0.0] == []
