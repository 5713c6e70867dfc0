"""reproduce with other forget requests: a random share, a sequence of class requests applied one after another,
and the samples request files name (with every command that takes data, and every bad request as one line)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prunelora.data import balanced_indices, load_dataset

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
    assert point["prune_mode"] == "mask" and point["trainable_params"] < next(  # auto: the LoRA update regrows
        r for r in rows if r["method"] == "finetune")["trainable_params"]


# -- named samples: request files (issue 22) -------------------------------------------------------------------------

QUICK = ["--preset", "smoke", "--models", "resnet18", "--no-progress"]
# Eight digits training samples, all in the smoke preset's seed-0 subset or forced into it.
IDS = ["0", "5", "17", "300", "301", "302", "700", "1000"]


def request_file(path: Path, *ids: str) -> Path:
    path.write_text("# the samples to forget\n" + "\n".join(ids) + "\n")
    return path


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """`reproduce --forget r.txt`: eight named samples, finetune for one epoch."""
    from prunelora.cli import main

    root = tmp_path_factory.mktemp("named")
    out = root / "run"
    assert main(["reproduce", *QUICK, "--methods", "finetune", "--epochs", "1", "--forget",
                 str(request_file(root / "r.txt", *IDS)), "--out", str(out)]) == 0
    return out


def test_reproduce_forgets_the_named_samples(named_run):
    results = json.loads((named_run / "results.json").read_text())
    assert results["data_sizes"]["forget_train"] == len(IDS) and results["data_sizes"]["test_forget"] == 0
    assert results["config"]["data"]["scenario"] == "named"
    rows = results["rows"]
    assert [r["method"] for r in rows] == ["original", "finetune"]
    assert {(r["scenario"], r["request_desc"]) for r in rows} == {("named", "8 named samples (r.txt)")}
    assert all(r["forgotten_classes"] is None for r in rows)


def test_a_sequence_of_request_files_is_two_requests(tmp_path, capsys):
    files = [request_file(tmp_path / "a.txt", *IDS[:6]), request_file(tmp_path / "b.txt", *IDS[6:])]
    out = tmp_path / "run"
    rc, _, err = run_cli(["reproduce", *QUICK, "--methods", "retrain", "--epochs", "1", "--scenario", "sequential",
                          "--forget", f"{files[0]},{files[1]}", "--out", out], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["requests"] == ["6 named samples (a.txt)", "2 named samples (b.txt)"]
    assert {(r["request"], r["request_desc"]) for r in results["rows"]} == {
        (1, "6 named samples (a.txt)"), (2, "2 named samples (b.txt)")}
    assert results["data_sizes"]["forget_train"] == 8  # after request 2: both files forgotten
    assert (out / "seed0" / "stages" / "resnet18" / "r2" / "retrain.json").is_file()


@pytest.fixture(scope="module")
def named_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """`train --forget r.txt`: the original trained on the subset the named samples are forced into."""
    from prunelora.cli import main

    root = tmp_path_factory.mktemp("named_train")
    digits = load_dataset("digits")
    drawn = set(balanced_indices(digits.train_labels, 24, 0).tolist())
    outside = [str(i) for i in range(len(digits.train_labels)) if i not in drawn][:8]
    asked = request_file(root / "outside.txt", *outside)
    assert main(["train", *QUICK, "--forget", str(asked), "--out", str(root / "out")]) == 0
    return root / "out" / "seed0" / "models" / "resnet18" / "original.safetensors", asked


def test_train_evaluate_and_unlearn_take_a_request_file(named_checkpoint, tmp_path, capsys):
    from prunelora import storage

    checkpoint, asked = named_checkpoint
    assert storage.read_meta(checkpoint)["data"]["subset_key"]  # which forced subset it trained on
    rc, _, err = run_cli(["evaluate", "--checkpoint", checkpoint, "--forget", asked, "--no-progress",
                          "--out", tmp_path / "ev"], capsys)
    assert rc == 0, err
    assert "warning" not in err  # the same subset the checkpoint trained on
    (row,) = json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]
    assert row["request_desc"] == "8 named samples (outside.txt)" and row["scenario"] == "named"
    rc, _, err = run_cli(["unlearn", "--checkpoint", checkpoint, "--forget", asked, "--method", "finetune",
                          "--epochs", "1", "--no-progress", "--out", tmp_path / "un"], capsys)
    assert rc == 0, err
    results = json.loads((tmp_path / "un" / "results.json").read_text())
    assert results["data_sizes"]["forget_train"] == 8
    assert {r["request_desc"] for r in results["rows"]} == {"8 named samples (outside.txt)"}


def test_a_checkpoint_trained_without_the_named_samples_is_warned_about(named_checkpoint, tmp_path, capsys):
    from prunelora.cli import main

    plain = tmp_path / "plain"
    assert main(["train", *QUICK, "--out", str(plain)]) == 0
    rc, _, err = run_cli(["evaluate", "--checkpoint", plain / "seed0" / "models" / "resnet18" / "original.safetensors",
                          "--forget", named_checkpoint[1], "--no-progress", "--out", tmp_path / "ev"], capsys)
    assert rc == 0, err
    assert "it may never have seen some of the samples it is asked to forget" in err


def named_error_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    from .data.test_ids import write_folder

    digits = load_dataset("digits")
    class0 = [str(i) for i in np.flatnonzero(digits.train_labels == 0)[:24]]
    folder = write_folder(tmp_path / "images")
    f = {name: request_file(tmp_path / f"{name}.txt", *ids) for name, ids in {
        "unmatched": ["0", "99999", "abc"], "twice": ["4", "9", "4"], "empty": [], "ambiguous": ["shared.png"],
        "class0": class0, "good": IDS}.items()}
    return {
        "unmatched": (["--forget", f["unmatched"]], "2 ids match no training sample of digits"),
        "duplicate": (["--forget", f["twice"]], "lists id '4' twice"),
        "empty": (["--forget", f["empty"]], "names no sample"),
        "missing": (["--forget", tmp_path / "none.txt"], "request file not found"),
        "ambiguous": (["--forget", f["ambiguous"], "--dataset", folder], "is the file name of 3 training files "
                                                                         "(train/c0/shared.png, train/c1/shared.png"),
        "empties-class": (["--forget", f["class0"]], "leaves class 0 no training sample to keep"),
        "with-ratio": (["--forget", f["good"], "--forget-ratio", "0.1"], "--forget-ratio draws them at random"),
        "with-class": (["--forget", f["good"], "--forget-class", "3"], "--forget and --forget-class"),
        "with-requests": (["--forget", f["good"], "--scenario", "sequential", "--requests", "3,5"],
                          "leave out --requests"),
        "with-random": (["--forget", f["good"], "--scenario", "random"], "--scenario random chooses them"),
        "id-column-on-digits": (["--forget", f["good"], "--id-column", "name"], "--id-column reads a column"),
    }


NAMED_ERRORS = ["unmatched", "duplicate", "empty", "missing", "ambiguous", "empties-class", "with-ratio",
                "with-class", "with-requests", "with-random", "id-column-on-digits"]


@pytest.mark.parametrize("case", NAMED_ERRORS)
def test_a_bad_request_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys):
    extra, message = named_error_cases(tmp_path)[case]
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["reproduce", *QUICK, "--methods", "finetune", *extra, "--out", out], capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunelora: error: ") and message in lines[0], err
    assert "Traceback" not in err + stdout and not out.exists()


def test_allow_empty_class_lets_a_class_go(tmp_path, capsys):
    digits = load_dataset("digits")
    asked = request_file(tmp_path / "class0.txt", *map(str, np.flatnonzero(digits.train_labels == 0)[:24]))
    rc, _, err = run_cli(["train", *QUICK, "--forget", asked, "--out", tmp_path / "refused"], capsys)
    assert rc == 2 and "--allow-empty-class" in err and not (tmp_path / "refused").exists()
    rc, _, err = run_cli(["train", *QUICK, "--forget", asked, "--allow-empty-class", "--out", tmp_path / "out"],
                         capsys)
    assert rc == 0, err


def test_unlearn_a_users_own_model_with_a_request_file(tmp_path_factory, tmp_path, capsys):
    from .test_user_models import saved_hf

    source = saved_hf("vit", tmp_path_factory)
    asked = request_file(tmp_path / "r.txt", *IDS)
    rc, _, err = run_cli(["unlearn", "--model", f"hf:{source}", "--method", "finetune", "--epochs", "1", "--forget",
                          asked, "--preset", "smoke", "--no-progress", "--out", tmp_path / "out"], capsys)
    assert rc == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data_sizes"]["forget_train"] == len(IDS)
    assert [(r["method"], r["request_desc"]) for r in results["rows"]] == [
        ("original", "8 named samples (r.txt)"), ("finetune", "8 named samples (r.txt)")]
    saved = json.loads((tmp_path / "out" / results["rows"][1]["model_dir"] / "prunelora.json").read_text())
    assert saved["scenario"] == "named" and saved["forget_class"] is None


def test_bench_times_the_methods_on_the_retain_set_a_request_file_leaves(tmp_path):
    import torch

    from prunelora.bench.run import bench_splits
    from prunelora.config import resolve

    config = resolve(preset="smoke", overrides={"data": {"forget": str(request_file(tmp_path / "r.txt", *IDS))}})
    splits = bench_splits(load_dataset("digits"), config, 24, 0, torch.device("cpu"))
    assert len(splits.forget_train) == len(IDS) and len(splits.retain_train) == 240 - len(IDS)
