"""The Python API: prunelora's own models get their registry plan (as on the CLI), others an inferred one."""
from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import prunelora
import prunelora.api as api
from prunelora import storage
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
    storage.save_model(model, path, {"model": name, "model_args": args, "num_classes": 10, "in_channels": channels,
                                "image_size": size, "mean": list(digits_splits.mean), "std": list(digits_splits.std)})
    plan, recipe = _plan_used(monkeypatch, prunelora.load(path), digits_splits)
    spec = get_spec(name, args)
    assert plan == dataclasses.replace(spec.plan, family=spec.family)
    assert recipe.optimizer == ("adamw" if name == "vit" else "sgd")  # Retrain's recipe follows the family


def test_a_users_own_model_gets_an_inferred_plan(digits_splits, monkeypatch):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10))
    plan, _ = _plan_used(monkeypatch, model, digits_splits)
    assert plan.head == "3" and plan.prune_layers == "0" and plan.family == "resnet"


# -- forget-aware methods through the API ------------------------------------------------------------------------

def _small_resnet(splits):
    channels, size, _ = splits.image_shape
    return build_model("resnet18", 10, channels, size, splits.mean, splits.std, {"width": 4})


def test_surgery_and_objective_make_a_grid_point(digits_splits, monkeypatch):
    seen = {}

    def capture(name, original, retain, ctx, **kwargs):
        seen.update(name=name, ctx=ctx)
        raise Captured

    monkeypatch.setattr(api, "run_method", capture)
    with pytest.raises(Captured):
        prunelora.unlearn(_small_resnet(digits_splits), digits_splits.retain_train, digits_splits.forget_train,
                          surgery="prune+lora", objective="salun", method_args={"share": 0.3}, epochs=1)
    assert seen["name"] == "salun@prune+lora"
    assert len(seen["ctx"].forget) == len(digits_splits.forget_train)
    assert seen["ctx"].method_args == {"salun@prune+lora": {"share": 0.3}}


@pytest.mark.parametrize("kwargs,message", [
    ({"method": "ga"}, "trains on the forget set: pass forget="),
    ({"method": "lora", "objective": "ga"}, "not both"),
    ({"surgery": "graft"}, "unknown surgery 'graft'"),
    ({"objective": "sgd"}, "unknown objective 'sgd'"),
    ({"method": "ga", "method_args": {"lrr": 1}}, "unknown key 'method_args.ga.lrr'"),
])
def test_bad_method_requests_are_user_errors(digits_splits, kwargs, message):
    forget = None if kwargs.get("method") == "ga" and "method_args" not in kwargs else digits_splits.forget_train
    with pytest.raises(prunelora.UserError, match=message):
        prunelora.unlearn(_small_resnet(digits_splits), digits_splits.retain_train, forget, epochs=1, **kwargs)


def test_logit_mask_needs_whole_classes_and_then_hides_them(digits_splits):
    with pytest.raises(prunelora.UserError, match="whole classes"):
        prunelora.unlearn(_small_resnet(digits_splits), digits_splits.retain_train,
                          digits_splits.retain_train.subset(range(5)), method="logit-mask")
    result = prunelora.unlearn(_small_resnet(digits_splits), digits_splits.retain_train, digits_splits.forget_train,
                               method="logit-mask")
    assert result.metrics["forget_acc"] == 0.0 and result.forgotten and result.epochs == 0
    assert result.trainable_params == 0


def test_the_warning_names_the_forget_aware_methods():
    from prunelora.methods import get_method

    text = api.forget_aware_hint(get_method("prunelora"))
    assert all(f"'{m}'" in text for m in ("ga", "neggrad+", "rl", "salun", "scrub"))
    assert "'ft-l1'" not in text and "'logit-mask'" not in text  # they never train on the forget set
    assert "surgery='prune+lora', objective='salun'" in text
    assert "surgery=" not in api.forget_aware_hint(get_method("finetune"))


def test_advice_after_a_sample_request_aims_at_unseen_data_not_at_a_class():
    """Samples of classes the model keeps are forgotten when recognised no better than unseen data (the test
    set's accuracy, plus 5 points); far below it they are over-forgotten; whole classes keep the 20 % target."""
    from types import SimpleNamespace

    import torch

    from prunelora.api import result_of

    run = SimpleNamespace(method="finetune", info={}, trainable_params=1, snapshots=[])
    snap = SimpleNamespace(model=torch.nn.Linear(1, 1), peak_memory_mb=0.0, memory_kind="cpu", rss_growth_mb=None)

    def result(forget: float, test: float, class_wise: bool):
        return result_of(run, snap, None, [{"epoch": 1, "forget_acc": forget, "test_acc": test}], None, False, 1.0,
                         class_wise)

    kept = result(100.0, 90.0, class_wise=False)
    assert kept.forgotten is False and kept.target == 95.0 and "unseen data's 90.0 %" in kept.warning
    assert "20 %" not in kept.warning
    assert result(97.0, 95.0, class_wise=False).forgotten and result(97.0, 95.0, class_wise=False).warning is None
    low = result(60.0, 95.0, class_wise=False)
    assert low.forgotten and "over-forgotten" in low.warning and "fewer epochs" in low.warning
    whole = result(60.0, 95.0, class_wise=True)
    assert whole.forgotten is False and whole.target == 20.0 and "target at most 20 %" in whole.warning


# -- the default prune mode from Python ---------------------------------------------------------------------------

def test_auto_trains_the_smaller_network_and_hands_back_the_callers_shapes(digits_splits):
    """prune_mode auto on a conv net (Prune+Finetune, whose masks keep pruned channels at zero): channels are taken
    out for training, and the model returned is the caller's architecture with those channels as zeros, computing
    what the smaller network computes."""
    import copy

    import torch

    from prunelora.data import to_float
    from prunelora.models.outputs import unwrap

    original = _small_resnet(digits_splits)
    result = prunelora.unlearn(copy.deepcopy(original), digits_splits.retain_train, digits_splits.forget_train,
                               method="prune-finetune", epochs=1, progress=False)
    assert result.info["prune_mode"] == "remove" and result.removed_channels
    shapes = {k: v.shape for k, v in original.state_dict().items()}
    assert {k: v.shape for k, v in result.model.state_dict().items()} == shapes
    assert result.in_original_shapes(copy.deepcopy(original)) is result.model  # already written back
    smaller = unwrap(result._run.snapshots[-1].model).eval()
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in original.parameters())
    x = to_float(digits_splits.test_retain.images[:64])
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), smaller(x), atol=1e-4, rtol=0)
    explicit = prunelora.unlearn(copy.deepcopy(original), digits_splits.retain_train, digits_splits.forget_train,
                                 method="prunelora", epochs=1, progress=False, prune_mode="remove")
    assert sum(p.numel() for p in explicit.model.parameters()) < sum(p.numel() for p in original.parameters())
