"""The command line on the smoke preset: the four commands end to end, and every user mistake as exit 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import prunelora.runner as runner
from prunelora import storage
from prunelora.cli import main
from prunelora.metrics.evaluate import SPLITS

from .helpers import run_cli

SMOKE = ["--preset", "smoke", "--no-progress"]


def load_rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    """`prunelora train` on digits (ResNet-18, width 4): the original's checkpoint."""
    out = tmp_path_factory.mktemp("train_digits") / "out"
    assert main(["train", *SMOKE, "--models", "resnet18", "--out", str(out)]) == 0
    return out / "seed0" / "models" / "resnet18" / "original.safetensors"


@pytest.fixture(scope="module")
def cifar_checkpoint(tmp_path_factory, fake_cifar10_root) -> Path:
    """`prunelora train` on a fake CIFAR-10 folder (3 x 32 x 32 images)."""
    out = tmp_path_factory.mktemp("train_cifar") / "out"
    assert main(["train", *SMOKE, "--models", "resnet18", "--dataset", "cifar10", "--data-root",
                 str(fake_cifar10_root), "--no-download", "--out", str(out)]) == 0
    return out / "seed0" / "models" / "resnet18" / "original.safetensors"


# -- the commands end to end ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_reproduce_on_the_smoke_preset(tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune,prunelora",
                               "--out", out], capsys)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "| Finetune |" in stdout and "| PruneLoRA |" in stdout and str(out / "results.json") in stdout
    rows = load_rows(out)
    assert [(r["model"], r["method"], r["epochs"]) for r in rows] == [
        ("resnet18", "original", None), ("resnet18", "finetune", 1), ("resnet18", "finetune", 2),
        ("resnet18", "prunelora", 1), ("resnet18", "prunelora", 2)]
    assert (out / "results.md").is_file() and (out / "plots" / "losses_resnet18.png").is_file()


@pytest.mark.slow
def test_train_then_unlearn_then_evaluate(tmp_path, capsys, digits_checkpoint):
    train_rows = load_rows(digits_checkpoint.parents[3])
    assert [(r["model"], r["method"], r["epochs"]) for r in train_rows] == [("resnet18", "original", None)]
    meta = storage.read_meta(digits_checkpoint)
    assert meta["model"] == "resnet18" and meta["model_args"] == {"width": 4} and meta["in_channels"] == 1

    unlearned = tmp_path / "unlearn"
    rc, _, err = run_cli(["unlearn", *SMOKE, "--checkpoint", digits_checkpoint, "--method", "lora",
                          "--out", unlearned], capsys)
    assert rc == 0, err
    rows = load_rows(unlearned)
    assert [(r["method"], r["epochs"]) for r in rows] == [("lora", 1), ("lora", 2)]
    checkpoint = unlearned / "seed0" / "models" / "resnet18" / "lora_e2.safetensors"
    assert storage.read_meta(checkpoint)["method"] == "lora"

    dump = tmp_path / "dump" / "logits.npz"
    evaluated = tmp_path / "evaluate"
    rc, stdout, err = run_cli(["evaluate", *SMOKE, "--checkpoint", checkpoint, "--dump-logits", dump,
                               "--out", evaluated], capsys)
    assert rc == 0, err
    (row,) = load_rows(evaluated)
    assert (row["model"], row["method"], row["epochs"]) == ("resnet18", "lora", 2)
    for key in ("ua", "ra", "ta", "mia_efficacy"):
        assert row[key] == pytest.approx(rows[1][key]), key  # the same model on the same splits
    with np.load(dump, allow_pickle=False) as data, \
            np.load(unlearned / rows[1]["logits_file"], allow_pickle=False) as reference:
        assert sorted(data.files) == sorted([f"{s}_logits" for s in SPLITS] + [f"{s}_labels" for s in SPLITS])
        assert set(data["forget_train_labels"].tolist()) == {3}
        assert 3 not in data["retain_train_labels"].tolist() and 3 not in data["test_retain_labels"].tolist()
        assert set(data["test_forget_labels"].tolist()) == {3}
        for s in SPLITS:
            assert data[f"{s}_logits"].shape == (len(data[f"{s}_labels"]), 10)
            np.testing.assert_allclose(data[f"{s}_logits"], reference[f"{s}_logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_evaluate_of_the_original_matches_train(tmp_path, capsys, digits_checkpoint):
    rc, _, err = run_cli(["evaluate", *SMOKE, "--checkpoint", digits_checkpoint, "--out", tmp_path / "ev"], capsys)
    assert rc == 0, err
    (row,) = load_rows(tmp_path / "ev")
    (train_row,) = load_rows(digits_checkpoint.parents[3])
    assert row["method"] == "original" and row["epochs"] is None
    for key in ("ua", "ra", "ta", "mia_efficacy"):
        assert row[key] == pytest.approx(train_row[key]), key


@pytest.mark.slow
def test_train_with_two_seeds_saves_each_seeds_own_original(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run_cli(["train", *SMOKE, "--models", "resnet18", "--seeds", "0,1", "--out", out], capsys)
    assert rc == 0, err
    states = {}
    for seed in (0, 1):
        path = out / f"seed{seed}" / "models" / "resnet18" / "original.safetensors"
        model, meta = storage.load_model(path)
        assert meta["seed"] == seed
        states[seed] = model.state_dict()
        cached = [storage.load_model(p)[0].state_dict() for p in (out / "cache").glob("resnet18-*.safetensors")
                  if storage.read_meta(p)["seed"] == seed]
        assert len(cached) == 1 and all(torch.equal(cached[0][k], states[seed][k]) for k in states[seed])
    assert not torch.equal(states[0]["stem.0.weight"], states[1]["stem.0.weight"])


@pytest.mark.slow
def test_unlearning_another_checkpoint_into_the_same_folder_trains_again(tmp_path, capsys, monkeypatch,
                                                                          digits_checkpoint):
    """A finished stage may only be reused for the same original model, not for any checkpoint of its shape."""
    out = tmp_path / "out"
    rc, _, err = run_cli(["unlearn", *SMOKE, "--checkpoint", digits_checkpoint, "--method", "finetune",
                          "--out", out], capsys)
    assert rc == 0, err
    other = tmp_path / "other.safetensors"
    shutil.copy(out / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors", other)  # a different model
    calls = []
    real = runner.fit
    monkeypatch.setattr(runner, "fit", lambda *a, **k: calls.append(1) or real(*a, **k))
    rc, _, err = run_cli(["unlearn", *SMOKE, "--checkpoint", other, "--method", "finetune", "--out", out,
                          "--overwrite"], capsys)
    assert rc == 0, err
    assert calls == [1], "the rows of the first checkpoint were served for the second"


# -- user errors -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corrupt_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corrupt") / "model.safetensors"
    path.write_bytes(b"\x00\x01 this is not a safetensors file" * 10)
    return path


ERRORS = [
    # (id, argv with placeholders, a piece of the message)
    ("unknown-dataset", ["reproduce", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    ("unknown-model", ["reproduce", "--models", "resnet7"], "unknown model 'resnet7'"),
    ("unknown-method", ["reproduce", "--methods", "finetune,salun2"], "unknown method 'salun2'"),
    ("unknown-method-unlearn", ["unlearn", "--checkpoint", "{ckpt}", "--method", "salun2"], "unknown method 'salun2'"),
    # Forget requests, surgeries and objectives (issue 10).
    ("forget-ratio-0", ["reproduce", "--scenario", "random", "--forget-ratio", "0"], "--forget-ratio must lie in (0, 1)"),
    ("forget-ratio-1", ["reproduce", "--scenario", "random", "--forget-ratio", "1"], "--forget-ratio must lie in (0, 1)"),
    ("unknown-scenario", ["reproduce", "--scenario", "stream"], "unknown scenario 'stream'"),
    ("unknown-surgery", ["unlearn", "--checkpoint", "{ckpt}", "--surgery", "graft", "--objective", "ga"],
     "unknown surgery 'graft'"),
    ("unknown-objective", ["unlearn", "--checkpoint", "{ckpt}", "--surgery", "lora", "--objective", "sgd"],
     "unknown objective 'sgd'"),
    ("method-and-objective", ["unlearn", "--checkpoint", "{ckpt}", "--method", "lora", "--objective", "ga"],
     "not both"),
    ("logit-mask-random", ["reproduce", "--scenario", "random", "--methods", "retrain,logit-mask"],
     "logit-mask forgets whole classes"),
    ("logit-mask-random-unlearn", ["unlearn", "--checkpoint", "{ckpt}", "--method", "logit-mask", "--scenario",
                                   "random"], "logit-mask forgets whole classes"),
    ("request-out-of-range", ["reproduce", "--scenario", "sequential", "--requests", "3,12"],
     "forget class 12 is out of range"),
    ("request-repeated", ["reproduce", "--scenario", "sequential", "--requests", "3,5,3"], "repeats a class"),
    ("request-repeated-by-name", ["reproduce", "--scenario", "sequential", "--requests", "3,5,4,5"],
     "repeats a class"),
    ("sequential-without-requests", ["reproduce", "--scenario", "sequential"], "needs --requests"),
    ("requests-without-sequential", ["reproduce", "--requests", "3,5"], "goes with --scenario sequential"),
    ("unknown-method-setting", ["reproduce", "--methods", "ga", "--set", "method_args.ga.lrr=1"],
     "unknown key 'method_args.ga.lrr'"),
    ("method-setting-type", ["reproduce", "--methods", "scrub", "--set", "method_args.scrub.max_steps=two"],
     "'method_args.scrub.max_steps' must be int"),
    # Evidence (issue 11).
    ("ulira-1", ["reproduce", "--ulira", "1"], "--ulira needs at least 2 shadow pairs"),
    ("ulira-negative", ["reproduce", "--ulira", "-3"], "--ulira needs at least 2 shadow pairs"),
    ("ulira-above-capacity", ["reproduce", "--train-per-class", "2", "--ulira", "3"],
     "more shadow pairs than the forget set of 2 samples allows"),
    ("ulira-sequential", ["reproduce", "--scenario", "sequential", "--requests", "3,5", "--ulira", "2"],
     "not sequential"),
    ("ulira-unlearn", ["unlearn", "--checkpoint", "{ckpt}", "--set", "evidence.ulira=2"], "runs with reproduce"),
    ("unknown-mia-protocol", ["reproduce", "--mia-protocol", "carlini"], "unknown MIA protocol 'carlini'"),
    ("unknown-mia-protocol-evaluate", ["evaluate", "--checkpoint", "{ckpt}", "--mia-protocol", "x"],
     "unknown MIA protocol 'x'"),
    ("mia-draws-0", ["reproduce", "--mia-draws", "0"], "--mia-draws must be at least 1"),
    ("forget-class-10", ["reproduce", "--forget-class", "10"], "forget class 10 is out of range"),
    ("forget-class-negative", ["reproduce", "--forget-class", "-1"], "forget class -1 is out of range"),
    ("forget-class-10-evaluate", ["evaluate", "--checkpoint", "{ckpt}", "--forget-class", "10"], "forget class 10"),
    ("missing-data-root", ["reproduce", "--dataset", "cifar10", "--data-root", "/nonexistent"], "/nonexistent"),
    ("no-cifar-offline", ["reproduce", "--dataset", "cifar10", "--data-root", "{empty}", "--no-download"],
     "cifar-10-batches-py"),
    ("corrupt-checkpoint-evaluate", ["evaluate", "--checkpoint", "{corrupt}"], "model.safetensors"),
    ("corrupt-checkpoint-unlearn", ["unlearn", "--checkpoint", "{corrupt}", "--method", "lora"], "model.safetensors"),
    ("missing-checkpoint", ["evaluate", "--checkpoint", "{empty}/none.safetensors"], "checkpoint not found"),
    ("digits-checkpoint-on-cifar", ["evaluate", "--checkpoint", "{ckpt}", "--dataset", "cifar10", "--data-root",
                                    "{cifar}", "--no-download"], "was trained on digits, not cifar10"),
    ("cifar-checkpoint-on-digits", ["unlearn", "--checkpoint", "{cifar_ckpt}", "--method", "finetune", "--dataset",
                                    "digits"], "was trained on cifar10, not digits"),
    ("models-against-checkpoint", ["evaluate", "--checkpoint", "{ckpt}", "--set", "models=[vit]"],
     "holds a 'resnet18' model, not vit"),
    ("model-args-against-checkpoint", ["unlearn", "--checkpoint", "{ckpt}", "--method", "lora", "--set",
                                       "model_args.resnet18.width=8"], "is a 'resnet18' with"),
    # Each subcommand takes only its own flags.
    ("train-takes-no-methods", ["train", "--methods", "lora"], "unrecognized arguments: --methods"),
    ("evaluate-takes-no-lora-rank", ["evaluate", "--checkpoint", "{ckpt}", "--lora-r", "4"],
     "unrecognized arguments: --lora-r"),
    ("evaluate-takes-no-models", ["evaluate", "--checkpoint", "{ckpt}", "--models", "vit"],
     "unrecognized arguments: --models"),
    ("unlearn-takes-one-method", ["unlearn", "--checkpoint", "{ckpt}", "--method", "lora", "--methods", "lora"],
     "unrecognized arguments: --methods"),
    ("threads-0", ["reproduce", "--threads", "0"], "threads must be a positive integer"),
    ("prune-amount-0", ["reproduce", "--prune-amount", "0"], "prune amount must lie in (0, 1)"),
    ("prune-amount-1.5", ["reproduce", "--prune-amount", "1.5"], "prune amount must lie in (0, 1)"),
    ("prune-mode", ["reproduce", "--prune-mode", "cut"], "unknown prune mode 'cut'"),
    ("epochs-0", ["reproduce", "--epochs", "0"], "epochs must be positive"),
    ("epochs-negative", ["reproduce", "--epochs", "-1"], "epochs must be positive"),
    ("epochs-not-a-number", ["reproduce", "--epochs", "five"], "expected comma-separated integers"),
    ("pretrain-epochs-0", ["reproduce", "--pretrain-epochs", "0"], "pretrain epochs must be a positive integer"),
    ("unknown-preset", ["reproduce", "--preset", "huge"], "unknown preset 'huge'"),
    ("set-unknown-key", ["reproduce", "--set", "unlearn.nope=1"], "unknown key 'unlearn.nope'"),
    ("set-unknown-section", ["reproduce", "--set", "training.lr=1"], "unknown key 'training'"),
    ("set-without-value", ["reproduce", "--set", "unlearn.lr"], "--set expects KEY=VALUE"),
    ("set-wrong-type", ["reproduce", "--set", "unlearn.lr=fast"], "'unlearn.lr' must be float"),
    ("unknown-model-argument", ["reproduce", "--models", "resnet18", "--set", "model_args.resnet18.widht=4"],
     "has no argument 'widht'"),
    ("lora-rank-0", ["reproduce", "--lora-r", "0"], "lora rank must be positive"),
    ("train-per-class-0", ["reproduce", "--train-per-class", "0"], "train_per_class must be positive"),
    ("precision", ["reproduce", "--precision", "fp8"], "unknown precision 'fp8'"),
    ("device", ["reproduce", "--device", "tpu"], "device"),
    ("missing-config-file", ["reproduce", "--config", "{empty}/none.yaml"], "config file not found"),
    ("dump-logits-not-npz", ["evaluate", "--checkpoint", "{ckpt}", "--dump-logits", "{empty}/logits.txt"], ".npz"),
    ("missing-checkpoint-flag", ["unlearn", "--method", "lora"], "--checkpoint"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
    ("no-command", [], "required"),
    ("vit-remove-mode", ["reproduce", "--models", "vit", "--methods", "prune-finetune", "--prune-mode", "remove"],
     "shrink every block (use --prune-mode mask, or auto"),
    ("search-patience-negative", ["search", "--methods", "finetune", "--patience", "-1"], "--patience -1: give 0"),
    # The second model's arguments are invalid: refused before the first model is trained and written.
    ("second-model-bad-argument", ["reproduce", "--models", "resnet18,vit", "--methods", "finetune",
                                   "--set", "model_args.vit.dim=30"], "cannot build model 'vit'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv,message", [pytest.param(a, m, id=i) for i, a, m in ERRORS])
def test_user_error_exits_2_with_one_line_and_writes_nothing(argv, message, tmp_path, capsys, request):
    places = {"out": tmp_path / "out", "empty": tmp_path / "empty"}
    places["empty"].mkdir()
    joined = " ".join(argv)
    if "{ckpt}" in joined:
        places["ckpt"] = request.getfixturevalue("digits_checkpoint")
    if "{cifar_ckpt}" in joined:
        places["cifar_ckpt"] = request.getfixturevalue("cifar_checkpoint")
    if "{cifar}" in joined:
        places["cifar"] = request.getfixturevalue("fake_cifar10_root")
    if "{corrupt}" in joined:
        places["corrupt"] = request.getfixturevalue("corrupt_checkpoint")
    args = [a.format(**places) for a in argv]
    if args:
        args += ["--no-progress", "--out", str(places["out"])]
        if "--preset" not in args:
            args += ["--preset", "smoke"]
    rc, stdout, err = run_cli(args, capsys)
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("prunelora: error: ")
    assert message in lines[0]
    assert "Traceback" not in err + stdout
    assert not places["out"].exists()
    assert list(places["empty"].iterdir()) == []


# -- checkpoints carry their context ------------------------------------------------------------------------------

@pytest.mark.slow
def test_checkpoint_commands_take_dataset_model_and_subset_from_the_checkpoint(tmp_path, capsys, cifar_checkpoint,
                                                                                fake_cifar10_root):
    """No --dataset, --data-root or --preset: the checkpoint's CIFAR-10 folder, subset and width are used."""
    out = tmp_path / "unlearn"
    rc, _, err = run_cli(["unlearn", "--checkpoint", cifar_checkpoint, "--method", "finetune", "--epochs", "1",
                          "--no-progress", "--out", out], capsys)
    assert rc == 0, err
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["data"]["dataset"] == "cifar10"
    assert Path(config["data"]["data_root"]) == Path(fake_cifar10_root).resolve()
    assert config["data"]["train_per_class"] == 24  # the smoke subset it was trained on, not the cpu preset's 500
    assert config["model_args"]["resnet18"] == {"width": 4}
    unlearned = out / "seed0" / "models" / "resnet18" / "finetune_e1.safetensors"
    assert storage.read_meta(unlearned)["forget_class"] == 3

    rc, _, err = run_cli(["evaluate", "--checkpoint", unlearned, "--no-progress", "--out", tmp_path / "same"], capsys)
    assert rc == 0, err
    assert "warning" not in err
    (row,) = load_rows(tmp_path / "same")
    (reference,) = [r for r in load_rows(out) if r["epochs"] == 1]
    assert row["ua"] == pytest.approx(reference["ua"]) and row["ta"] == pytest.approx(reference["ta"])


@pytest.mark.slow
def test_evaluating_another_forget_class_than_the_checkpoints_warns(tmp_path, capsys, digits_checkpoint):
    unlearned_out = tmp_path / "unlearn"
    rc, _, err = run_cli(["unlearn", *SMOKE, "--checkpoint", digits_checkpoint, "--method", "finetune",
                          "--epochs", "1", "--out", unlearned_out], capsys)
    assert rc == 0, err
    unlearned = unlearned_out / "seed0" / "models" / "resnet18" / "finetune_e1.safetensors"
    out = tmp_path / "eval5"
    rc, _, err = run_cli(["evaluate", *SMOKE, "--checkpoint", unlearned, "--forget-class", "5", "--out", out], capsys)
    assert rc == 0, err
    assert "prunelora: warning: the checkpoint forgot class 3, but this run's forget class is 5" in err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["data"]["forget_class"] == 5
    assert any("forgot class 3" in w for w in results["warnings"])
    assert "forgot class 3" in (out / "results.md").read_text()


@pytest.mark.slow
def test_threads_are_set_and_the_machine_load_recorded(tmp_path, capsys, digits_checkpoint):
    before = torch.get_num_threads()
    try:
        rc, _, err = run_cli(["evaluate", *SMOKE, "--checkpoint", digits_checkpoint, "--threads", "1",
                              "--out", tmp_path / "ev"], capsys)
        assert rc == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    load = results["machine_load"]
    assert load["threads"] == 1 and results["environment"]["threads"] == 1
    assert set(load) >= {"cores", "loadavg_start", "loadavg_end", "others_cpu_share", "busy"}


@pytest.mark.parametrize("command", ["reproduce", "train", "unlearn", "evaluate"])
def test_help_lists_only_the_flags_a_command_uses(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    expected = {"reproduce": {"--methods", "--models", "--lora-r", "--pretrain-epochs"},
                "train": {"--models", "--pretrain-epochs"},
                "unlearn": {"--method", "--lora-r", "--checkpoint"},
                "evaluate": {"--checkpoint", "--dump-logits"}}[command]
    absent = {"reproduce": {"--checkpoint", "--method "}, "train": {"--methods", "--lora-r", "--epochs", "--checkpoint"},
              "unlearn": {"--methods", "--models"}, "evaluate": {"--methods", "--models", "--lora-r", "--epochs",
                                                                 "--prune-amount", "--precision"}}[command]
    assert all(flag in text for flag in expected)
    assert not any(flag in text for flag in absent), [f for f in absent if f in text]


@pytest.mark.slow
def test_until_forget_acc_stops_a_checkpoint_run_at_the_first_epoch_that_reaches_it(tmp_path, capsys,
                                                                                   digits_checkpoint):
    out = tmp_path / "until"
    rc, _, err = run_cli(["unlearn", *SMOKE, "--checkpoint", digits_checkpoint, "--method", "finetune", "--epochs",
                          "5,10", "--lr", "1e-2", "--until-forget-acc", "50", "--out", out], capsys)
    assert rc == 0, err
    rows = load_rows(out)
    assert rows[-1]["epochs"] < 10 and 100 - rows[-1]["ua"] <= 50
    assert all(100 - r["ua"] > 50 for r in rows[:-1])
