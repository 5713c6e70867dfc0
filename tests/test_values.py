"""Values are checked where they enter, and training that diverges says so (issue 19, parts 4 and 5).

No NaN or infinite setting is accepted, a run whose loss or weights become non-finite stops with the
run and epoch named, no NaN reaches scikit-learn or a verdict, --threads never exceeds the cores, and
no model FLOP utilisation reads above 100 %.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from prunelora.config import RunConfig, UnlearnConfig, resolve, validate
from prunelora.data import ImageSet
from prunelora.errors import UserError

from .helpers import run_cli

TINY_RUN = ["reproduce", "--preset", "smoke", "--models", "resnet18", "--methods", "finetune", "--threads", "1",
            "--no-progress"]


def one_line_error(rc: int, err: str) -> str:
    """The CLI's rule for a user mistake: exit 2, one line starting 'prunelora: error:', no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("prunelora: error:"), err
    return lines[0]


# -- 1. settings: finite, positive where they must be -------------------------------------------------
@pytest.mark.parametrize("overrides, names", [
    ({"unlearn": {"lr": float("nan")}}, "unlearn.lr"),
    ({"unlearn": {"lr": "inf"}}, "unlearn.lr"),
    ({"pretrain": {"lr": float("nan")}}, "pretrain.lr"),
    ({"evidence": {"relearn_lr": "nan"}}, "evidence.relearn_lr"),
    ({"unlearn": {"weight_decay": "nan"}}, "unlearn.weight_decay"),
    ({"pretrain": {"momentum": "inf"}}, "pretrain.momentum"),
    ({"method_args": {"finetune": {"lr": "nan"}}}, "method_args.finetune.lr"),
    ({"method_args": {"scrub": {"temperature": float("inf")}}}, "method_args.scrub.temperature"),
    ({"method_args": {"neggrad+": {"alpha": "nan"}}}, "method_args.neggrad+.alpha"),
    ({"model_args": {"vit": {"depth": float("inf")}}}, "model_args.vit.depth"),
])
def test_nan_and_inf_settings_are_refused(overrides, names):
    with pytest.raises(UserError, match=re.escape(f"'{names}' must be a finite number")):
        resolve(preset="smoke", overrides=overrides)


@pytest.mark.parametrize("overrides, match", [
    ({"method_args": {"ga": {"lr": "-1e-3"}}}, "method_args.ga.lr must be positive"),
    ({"method_args": {"scrub": {"temperature": 0}}}, "method_args.scrub.temperature must be positive"),
    ({"method_args": {"salun": {"share": 1.5}}}, r"method_args.salun.share must be a share in \(0, 1\]"),
    ({"method_args": {"ga": 3}}, "'method_args.ga' must be a mapping"),
    ({"unlearn": {"weight_decay": -1}}, "unlearn.weight_decay cannot be negative"),
    ({"unlearn": {"lora_dropout": 1.0}}, r"lora_dropout must lie in \[0, 1\)"),
])
def test_out_of_range_settings_are_refused(overrides, match):
    with pytest.raises(UserError, match=match):
        resolve(preset="smoke", overrides=overrides)


def test_a_config_built_in_python_is_checked_too():
    with pytest.raises(UserError, match="'unlearn.lr' must be a finite number"):
        validate(RunConfig(unlearn=UnlearnConfig(lr=float("nan")), models=["resnet18"], methods=["finetune"]))


@pytest.mark.parametrize("flags, match", [
    (["--lr", "nan"], "'unlearn.lr' must be a finite number, got nan"),
    (["--set", "method_args.finetune.lr=inf"], "'method_args.finetune.lr' must be a finite number"),
])
def test_cli_refuses_a_nan_learning_rate_in_one_line(flags, match, tmp_path, capsys):
    rc, _, err = run_cli([*TINY_RUN, *flags, "--out", tmp_path / "out"], capsys)
    assert match in one_line_error(rc, err)
    assert not (tmp_path / "out").exists()


# -- 2. training that diverges says so ----------------------------------------------------------------
def tiny_data(n: int = 64) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8),
                    torch.randint(0, 4, (n,), generator=g))


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_diverging_fit_stops_naming_the_run_and_the_epoch(optimizer):
    from prunelora.train import Diverged, OptimSettings, fit

    seen = []
    with pytest.raises(Diverged) as caught:
        fit(tiny_model(), tiny_data(), OptimSettings(optimizer=optimizer, lr=1e30, batch_size=16), 3, seed=0,
            progress=False, desc="resnet18 finetune", hint="lower the learning rate (--lr)",
            on_epoch_end=lambda epoch, history: seen.append(epoch))
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert message.startswith("resnet18 finetune diverged in epoch 1 (non-finite ")
    assert message.endswith("lower the learning rate (--lr)") and "\n" not in message
    assert seen == []  # nothing evaluated the NaN model


def test_non_finite_weights_are_never_handed_back():
    """A step that leaves the loss finite but the weights not is caught at the epoch's end too."""
    from prunelora.train import Diverged, OptimSettings, fit

    model = tiny_model()
    poison = model[1].weight

    def after_step() -> None:
        with torch.no_grad():
            poison[0, 0] = float("inf")

    with pytest.raises(Diverged, match="diverged in epoch 1 .non-finite (loss|weights)"):
        fit(model, tiny_data(), OptimSettings(lr=1e-3, batch_size=64), 2, seed=0, progress=False,
            after_step=after_step, desc="x")


def test_a_model_with_nan_weights_is_refused_before_training():
    from prunelora.train import OptimSettings, fit

    model = tiny_model()
    with torch.no_grad():
        model[3].bias[0] = float("nan")
    with pytest.raises(UserError, match="NaN or infinite values before training"):
        fit(model, tiny_data(), OptimSettings(), 1, seed=0, progress=False)


def test_gradient_ascent_may_grow_its_loss_without_being_called_diverged():
    from prunelora.objectives.gradient_ascent import GradientAscent
    from prunelora.train import OptimSettings, fit

    data = tiny_data()
    history = fit(tiny_model(), data, OptimSettings(optimizer="sgd", lr=0.5, batch_size=16), 3, seed=0,
                  progress=False, objective=GradientAscent(), forget=data)
    assert all(math.isfinite(v) and v < 0 for v in history.epoch_loss)


def test_each_method_is_told_which_learning_rate_to_lower():
    from prunelora.methods import get_method
    from prunelora.runner import lr_hint

    assert lr_hint(get_method("finetune")) == "lower the learning rate (--lr, or --set method_args.finetune.lr=...)"
    assert lr_hint(get_method("ga")) == "lower the learning rate (--set method_args.ga.lr=...)"
    assert "pretrain.lr" in lr_hint(get_method("retrain"))


@pytest.mark.slow
def test_cli_stops_a_diverging_stage_in_one_line(tmp_path, capsys):
    rc, _, err = run_cli([*TINY_RUN, "--lr", "1e30", "--out", tmp_path / "out"], capsys)
    line = one_line_error(rc, err)
    assert "finetune diverged in epoch 1 (non-finite" in line
    assert "lower the learning rate (--lr, or --set method_args.finetune.lr=...)" in line
    assert not list((tmp_path / "out").rglob("results.json"))  # no NaN row written as a result


# -- 3. no NaN or infinity reaches scikit-learn -------------------------------------------------------
def split_logits(bad: str | None = None, value: float = float("nan")) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    logits = {k: rng.normal(size=(40, 4)).astype(np.float32)
              for k in ("forget_train", "retain_train", "test_retain", "test_forget")}
    labels = {k: rng.integers(0, 4, 40) for k in logits}
    if bad is not None:
        logits[bad][3, 1] = value
    return logits, labels


@pytest.mark.parametrize("split, value", [("retain_train", float("nan")), ("forget_train", float("inf")),
                                          ("test_retain", float("nan"))])
@pytest.mark.parametrize("protocol", ["balanced", "liu"])
def test_attacks_refuse_outputs_that_are_not_finite(split, value, protocol):
    from prunelora.metrics.attacks import attack_suite

    logits, labels = split_logits(split, value)
    with pytest.raises(UserError, match=f"the model's outputs on {split} are not finite .1 of 160 values"):
        attack_suite(logits, labels, draws=1, protocol=protocol)


def test_a_masked_class_is_not_refused():
    """-inf in a column is logit-mask's masked class, not a broken model."""
    from prunelora.metrics.attacks import attack_suite

    logits, labels = split_logits()
    for values in logits.values():
        values[:, 2] = -np.inf
    assert math.isfinite(attack_suite(logits, labels, draws=1)["mia_efficacy"])
    logits["forget_train"][0, :] = -np.inf  # a row with no finite output at all is
    with pytest.raises(UserError, match="outputs on forget_train are not finite"):
        attack_suite(logits, labels, draws=1)


def test_membership_attack_refuses_features_that_are_not_finite():
    from prunelora.metrics.mia import liu_attack, membership_attack

    good = np.random.default_rng(0).random((30, 1))
    bad = good.copy()
    bad[0, 0] = np.inf
    with pytest.raises(UserError, match="shadow features are not finite"):
        membership_attack(good, bad, good)
    with pytest.raises(UserError, match="target features are not finite"):
        membership_attack(good, good, bad)
    with pytest.raises(UserError, match="target features are not finite"):
        liu_attack(good, good, bad, draws=1)


def test_metrics_from_logits_refuse_nan_outputs():
    from prunelora.metrics.evaluate import metrics_from_logits

    logits, labels = split_logits("retain_train")
    with pytest.raises(UserError, match="outputs on retain_train are not finite"):
        metrics_from_logits(logits, labels, mia_cap=100)


@pytest.mark.slow
def test_cli_refuses_a_model_whose_outputs_are_not_finite(tmp_path, capsys):
    """Before: scikit-learn's ValueError from the attack's SVC, as a traceback."""
    from safetensors.torch import save_file

    from .zoo import TorchvisionResNet18

    torch.manual_seed(0)
    state = TorchvisionResNet18().state_dict()
    state["fc.bias"][0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    rc, _, err = run_cli(["evaluate", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights",
                          tmp_path / "nan.safetensors", "--preset", "smoke", "--threads", "1", "--no-progress",
                          "--out", tmp_path / "out"], capsys)
    line = one_line_error(rc, err)
    assert "not finite" in line or "NaN" in line


def test_require_finite():
    from prunelora.metrics.finite import require_finite, require_finite_logits

    assert require_finite([1.0, 2.0], "x").tolist() == [1.0, 2.0]
    assert require_finite(np.zeros((0, 3)), "x").shape == (0, 3)
    assert require_finite(np.arange(3), "x").tolist() == [0, 1, 2]  # integers are always finite
    with pytest.raises(UserError, match=r"^the features are not finite \(2 of 3 values are NaN or infinite\): "
                                        r"check the input normalisation"):
        require_finite([np.nan, 1.0, -np.inf], "the features")
    logits, _ = split_logits("test_forget", -np.inf)
    require_finite_logits(logits)  # one masked logit in a row with finite ones
    logits["test_forget"][5] = np.nan
    with pytest.raises(UserError, match="outputs on test_forget"):
        require_finite_logits(logits)


# -- 4. a verdict never rests on NaN ------------------------------------------------------------------
def verdict_row(method: str, seed: int | None = 0, **values) -> dict:
    row = {"model": "m", "method": method, "epochs": None if method == "retrain" else 5, "seed": seed,
           "request": None, "ua": 100.0, "ra": 99.0, "ta": 95.0, "mia_efficacy": 100.0,
           "mia_attack_conclusive": True, "probe_forget_acc": 40.0, "relearn_steps": 20, "total_sec": 10.0}
    return {**row, **values}


@pytest.mark.parametrize("row_values, ref_values, expected", [
    ({"ua": float("nan")}, {}, "not measured"),  # an empty forget set: UA NaN, forget accuracy 0
    ({"ra": None}, {}, "not measured"),
    ({}, {"ta": float("nan")}, "not measured"),
    ({"ua": float("nan"), "ra": 10.0}, {}, "not measured"),  # not "damages utility" either
    ({"probe_forget_acc": float("nan")}, {}, "inconclusive"),
    ({}, {"relearn_steps": float("nan")}, "inconclusive"),
    ({"mia_efficacy": float("nan")}, {}, "inconclusive"),  # both attackers conclusive: the MIA counts
    ({"mia_efficacy": float("nan"), "mia_attack_conclusive": False}, {}, "matches Retrain"),
    ({"probe_forget_acc": float("nan"), "ua": 50.0}, {}, "does not forget"),  # a measured finding stands
    ({}, {}, "matches Retrain"),
])
def test_a_verdict_never_rests_on_a_metric_that_was_not_measured(row_values, ref_values, expected):
    from prunelora.metrics.verdict import tolerances, verdict

    ref = verdict_row("retrain", **ref_values)
    label, reasons = verdict(verdict_row("finetune", **row_values), ref, tolerances([ref]))
    assert label == expected
    if expected in ("not measured", "inconclusive"):
        assert reasons and all("not measured on" in r for r in reasons)


def test_add_verdicts_on_rows_with_nan():
    from prunelora.metrics.verdict import add_verdicts

    rows = [verdict_row("retrain", ua=float("nan")), verdict_row("finetune", ua=float("nan"))]
    add_verdicts(rows)
    assert [r["verdict"] for r in rows] == ["not measured", "not measured"]
    assert "ua not measured on this row and Retrain" in rows[1]["verdict_reasons"]


def test_the_gap_is_never_averaged_over_nan():
    from prunelora.metrics.summary import add_retrain_gap, aggregate_seeds

    rows = add_retrain_gap([verdict_row("retrain"), verdict_row("finetune", ua=float("nan")),
                            verdict_row("retrain", seed=1), verdict_row("finetune", seed=1, ua=90.0)])
    broken = rows[1]
    assert broken["avg_gap"] is None and broken["tow"] is None and broken["avg_gap_unmeasured"] == ["ua"]
    assert rows[3]["avg_gap"] == pytest.approx(10 / 4)
    (finetune,) = [r for r in aggregate_seeds(rows) if r["method"] == "finetune"]
    assert finetune["avg_gap"] is None and finetune["tow"] is None  # not the mean of the measured seed alone


# -- 5. threads -----------------------------------------------------------------------------------------
def test_threads_are_capped_at_the_cores_with_a_warning():
    from prunelora.machine import ThreadsWarning, available_cores, set_threads

    before = torch.get_num_threads()
    try:
        with pytest.warns(ThreadsWarning, match=f"--threads 10000 is more than the {available_cores()} cores"):
            assert set_threads(10000) == available_cores()
        assert torch.get_num_threads() == available_cores()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert set_threads(1) == 1
    finally:
        torch.set_num_threads(before)


# -- 6. the benchmark's reference is the measured peak ----------------------------------------------------
def test_the_peak_is_the_best_of_several_kernels():
    from prunelora.machine import matmul_flops_per_sec

    peak = matmul_flops_per_sec(torch.device("cpu"), size=64, repeats=2)
    kernels = peak["kernels"]
    assert len(kernels) >= 5 and any("transposed" in k for k in kernels) and any("conv2d" in k for k in kernels)
    assert peak["flops_per_sec"] == max(kernels.values()) == kernels[peak["kernel"]]
    assert peak["flops_per_sec"] == pytest.approx(peak["flops_per_matmul"] / np.median(peak["seconds"]))


def test_no_utilisation_reads_above_100_percent():
    from prunelora.bench import cap_utilisation, peak_line

    matmul = {"size": 64, "repeats": 2, "kernel": "matmul 64x64", "kernels": {"matmul 64x64": 100.0},
              "flops_per_sec": 100.0}
    rows = [{"model": "resnet18", "method": "finetune", "prune_mode": None, "achieved_flops_per_sec": 150.0,
             "mfu": 1.5},
            {"model": "resnet18", "method": "lora", "prune_mode": None, "achieved_flops_per_sec": 30.0, "mfu": 0.3},
            {"model": "vit", "method": "prunelora", "prune_mode": "remove", "achieved_flops_per_sec": None,
             "mfu": None}]
    assert cap_utilisation(rows, matmul)
    assert [r["mfu"] for r in rows] == [1.0, pytest.approx(0.2), None]
    assert matmul["flops_per_sec"] == 150.0 and matmul["measured_flops_per_sec"] == 100.0
    assert matmul["raised_by"] == "resnet18 finetune" and "raised" in peak_line(matmul)
    assert not cap_utilisation(rows, matmul)  # once raised, nothing is above it
