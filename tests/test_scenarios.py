"""reproduce with other forget requests: a random share, and a sequence of class requests applied one after another."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import run_cli

# A ResNet that learns digits in seconds: enough for "forgotten" to mean something.
LEARNS = ["--preset", "smoke", "--models", "resnet18", "--train-per-class", "100", "--test-per-class", "20",
          "--pretrain-epochs", "12", "--set", "model_args.resnet18.width=8", "--set", "pretrain.batch_size=64",
          "--no-progress"]


def rows_of(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    """Classes 3 then 5, forgotten by Retrain, RL (each request on RL's previous model) and logit-mask."""
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("sequence") / "run"
    assert main(["reproduce", *LEARNS, "--scenario", "sequential", "--requests", "3,5", "--epochs", "3",
                 "--methods", "retrain,rl,logit-mask", "--set", "method_args.rl.lr=0.05", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_rows_carry_scenario_and_request_and_files_are_per_request(sequence):
    rows = rows_of(sequence)
    assert {(r["scenario"], r["request"]) for r in rows} == {("sequential", 1), ("sequential", 2)}
    assert {r["request_desc"] for r in rows} == {"class 3", "class 5"}
    for request in (1, 2):
        assert (sequence / "seed0" / "stages" / "resnet18" / f"r{request}" / "rl.json").is_file()
        assert (sequence / "seed0" / "models" / "resnet18" / f"r{request}" / "rl_e3.safetensors").is_file()
    results = json.loads((sequence / "results.json").read_text())
    assert results["complete"] is True and results["requests"] == ["class 3", "class 5"]
    md = (sequence / "results.md").read_text()
    assert "Request 1 of 2: class 3" in md and "Request 2 of 2: class 5" in md
    assert "Request 2 of 2" in (sequence / "report.html").read_text()


def test_class_a_then_class_b_forgets_both(sequence):
    rows = rows_of(sequence)
    final = {r["method"]: r for r in rows if r["request"] == 2 and r["epochs"] in (None, 3)}
    assert final["original"]["forget_acc_r1"] > 60 and final["original"]["forget_acc_r2"] > 60  # it knew them
    for method in ("retrain", "rl", "logit-mask"):
        assert final[method]["forget_acc_r1"] <= 20, method  # class 3 stays forgotten after request 2
        assert final[method]["forget_acc_r2"] <= 20, method
    assert final["rl"]["ra"] > 70


def test_logit_mask_scores_ua_100_at_every_request_without_training(sequence):
    for row in rows_of(sequence):
        if row["method"] == "logit-mask":
            assert row["ua"] == 100.0 and row["trainable_params"] == 0
            assert row["masked_classes"] == {1: "3", 2: "3,5"}[row["request"]]


@pytest.mark.slow
def test_a_finished_sequence_is_reused(sequence, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(sequence, copy)
    rc, _, err = run_cli(["reproduce", *LEARNS, "--scenario", "sequential", "--requests", "3,5", "--epochs", "3",
                          "--methods", "retrain,rl,logit-mask", "--set", "method_args.rl.lr=0.05", "--out", str(copy)],
                         capsys)
    assert rc == 0, err
    results = json.loads((copy / "results.json").read_text())
    assert results["reused"]["stages"] == 1 + 2 * 3  # the original and every (request, method) stage
    assert results["time_split"]["training_steps_sec"] == 0.0


@pytest.mark.slow
def test_random_forgetting_runs_forget_aware_methods_on_a_random_share(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(["reproduce", *LEARNS, "--scenario", "random", "--forget-ratio", "0.2", "--epochs", "2",
                          "--methods", "retrain,finetune,scrub,salun@prune+lora", "--out", str(out)], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert {r["method"] for r in rows} == {"original", "retrain", "finetune", "scrub", "salun@prune+lora"}
    assert results["data_sizes"]["forget_train"] == round(0.2 * 1000)
    assert results["data_sizes"]["test_forget"] == 0
    assert {r["scenario"] for r in rows} == {"random"} and all(r["forgotten_classes"] is None for r in rows)
    assert "SalUn@PruneLoRA" in (out / "results.md").read_text()
    point = next(r for r in rows if r["method"] == "salun@prune+lora")
    assert point["prune_mode"] == "mask" and point["trainable_params"] < next(
        r for r in rows if r["method"] == "finetune")["trainable_params"]
