"""reproduce end to end on the smoke preset: the results contract, the files, and reuse of finished work."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import prunelora.driver.registry as originals  # the originals' training (fit) runs there
import prunelora.runner as runner
from prunelora import storage
from prunelora.config import resolve, to_dict
from prunelora.data import class_splits
from prunelora.methods import paper_methods
from prunelora.metrics.accuracy import unlearning_metrics
from prunelora.metrics.evaluate import SPLITS, collect_logits

from .helpers import copy_of, run_cli, same

ALL_METHODS = paper_methods()  # the paper's paradigms: reproduce's default

REQUIRED = ["model", "method", "epochs", "ua", "mia_efficacy", "ra", "ta", "sec_per_epoch", "total_sec",
            "peak_memory_mb", "trainable_params"]
PERCENT = ["ua", "mia_efficacy", "ra", "ta"]
MODELS = ["resnet18", "vit"]
BUDGETS = [1, 2]  # the smoke preset's unlearning budgets


def load_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def snapshot_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- the contract -----------------------------------------------------------------------------------------------

def test_results_json_contract(smoke_run):
    results = load_results(smoke_run)
    assert {"config", "rows"} <= set(results)
    config, rows = results["config"], results["rows"]
    assert config["preset"] == "smoke" and config["models"] == MODELS and config["methods"] == ALL_METHODS
    for row in rows:
        missing = [k for k in REQUIRED if k not in row]
        assert missing == [], row
        assert row["model"] in MODELS
        assert row["method"] in ["original", *ALL_METHODS]
        if row["method"] in ("original", "retrain"):
            assert row["epochs"] is None
        else:
            assert type(row["epochs"]) is int and row["epochs"] in BUDGETS
        for key in PERCENT:
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 100.0, (key, row[key])
        for key in ("sec_per_epoch", "total_sec", "peak_memory_mb"):
            assert isinstance(row[key], (int, float)) and not isinstance(row[key], bool) and row[key] >= 0, key
        assert type(row["trainable_params"]) is int and 0 < row["trainable_params"] <= row["params"]
    # one row per method per budget per model, nothing else
    expected = Counter()
    for model in MODELS:
        expected[(model, "original", None)] = 1
        expected[(model, "retrain", None)] = 1
        for method in ALL_METHODS[1:]:
            for budget in BUDGETS:
                expected[(model, method, budget)] = 1
    assert Counter((r["model"], r["method"], r["epochs"]) for r in rows) == expected


def test_trainable_parameter_counts_follow_the_methods(smoke_run):
    rows = load_results(smoke_run)["rows"]
    for model in MODELS:
        count = {r["method"]: r["trainable_params"] for r in rows if r["model"] == model}
        params = {r["method"]: r["params"] for r in rows if r["model"] == model}
        assert count["finetune"] == count["retrain"] == count["original"] == params["original"]
        removed = next(r for r in rows if r["model"] == model and r["method"] == "prune-finetune")
        if removed["prune_mode"] == "remove":  # the default, auto, takes a ResNet's channels out
            assert removed["params_after"] == count["prune-finetune"] < count["finetune"] / 2
        else:  # masks keep every weight trainable (the ViT)
            assert count["prune-finetune"] == count["finetune"]
        assert count["lora"] < count["finetune"] / 2
        adapted = next(r for r in rows if r["model"] == model and r["method"] == "prunelora")
        assert adapted["prune_mode"] == "mask"  # auto keeps masks where the LoRA update regrows pruned channels
        assert count["prunelora"] == count["lora"]
        assert params["lora"] == params["original"]  # delivered merged, not with adapters


def test_result_files_exist(smoke_run):
    results = load_results(smoke_run)
    rows = results["rows"]
    md = (smoke_run / "results.md").read_text()
    for label in ("Original", "Retrain", "Finetune", "Prune+Finetune", "LoRA", "PruneLoRA"):
        assert f"| {label} |" in md
    with open(smoke_run / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) and set(REQUIRED) <= set(table[0])
    assert [r["method"] for r in table] == [r["method"] for r in rows]
    for model in MODELS:
        png = smoke_run / "plots" / f"losses_{model}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in rows:
        npz = smoke_run / row["logits_file"]
        with np.load(npz, allow_pickle=False) as data:
            assert sorted(data.files) == sorted([f"{s}_logits" for s in SPLITS] + [f"{s}_labels" for s in SPLITS])
            assert set(data["forget_train_labels"].tolist()) == {3}
            assert data["retain_train_logits"].shape == (9 * 24, 10)
    assert not [p for p in smoke_run.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_config_yaml_reproduces_the_config(smoke_run):
    results = load_results(smoke_run)
    assert to_dict(resolve(yaml_path=smoke_run / "config.yaml")) == results["config"]


def test_row_metrics_match_the_dumped_logits(smoke_run):
    for row in load_results(smoke_run)["rows"]:
        with np.load(smoke_run / row["logits_file"], allow_pickle=False) as data:
            logits = {s: data[f"{s}_logits"] for s in SPLITS}
            labels = {s: data[f"{s}_labels"] for s in SPLITS}
        recomputed = unlearning_metrics(logits, labels)
        for key in ("ua", "ra", "ta"):
            assert row[key] == pytest.approx(recomputed[key]), (row["model"], row["method"], key)


@pytest.mark.slow
def test_saved_deliverables_are_the_evaluated_models(smoke_run, digits_raw):
    """Each saved model (LoRA merged, pruned) gives back the logits its row was computed from."""
    splits = class_splits(digits_raw, 3, 24, 12, seed=0)
    rows = [r for r in load_results(smoke_run)["rows"] if r["method"] != "original"]
    for row in rows:
        tag = row["method"] + (f"_e{row['epochs']}" if row["epochs"] is not None else "")
        path = smoke_run / "seed0" / "models" / row["model"] / f"{tag}.safetensors"
        model, meta = storage.load_model(path)
        assert meta["method"] == row["method"] and meta["epochs"] == row["epochs"]
        logits, _ = collect_logits(model, splits)
        with np.load(smoke_run / row["logits_file"], allow_pickle=False) as data:
            for s in SPLITS:
                np.testing.assert_allclose(logits[s], data[f"{s}_logits"], rtol=1e-3, atol=1e-3)
    for model in MODELS:
        for method in ("lora", "prunelora"):
            adapter = smoke_run / "seed0" / "models" / model / f"{method}_e2_adapter"
            assert (adapter / "adapter_config.json").is_file()


# -- reuse ---------------------------------------------------------------------------------------------------------

def _forbid(monkeypatch, module, what: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} should have been reused, not trained")

    monkeypatch.setattr(module, "fit", refuse)


def _count(monkeypatch, module) -> list[str]:
    calls: list[str] = []
    real = module.fit

    def counting(*args, **kwargs):
        calls.append(kwargs.get("desc", "?"))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "fit", counting)
    return calls


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> Path:
    return copy_of(smoke_run, tmp_path)


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(smoke_copy, capsys, monkeypatch):
    before_rows = load_results(smoke_copy)["rows"]
    kept = {k: v for k, v in snapshot_files(smoke_copy).items()
            if k.startswith(("seed0/stages/", "seed0/models/", "cache/"))}
    assert len([k for k in kept if k.startswith("seed0/stages/")]) == 2 * len(ALL_METHODS)
    _forbid(monkeypatch, originals, "the original")
    _forbid(monkeypatch, runner, "an unlearning stage")
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--out", smoke_copy, "--no-progress"], capsys)
    assert rc == 0, err
    after = snapshot_files(smoke_copy)
    assert {k: after[k] for k in kept} == kept  # same bytes, never rewritten
    assert same(load_results(smoke_copy)["rows"], before_rows)


@pytest.mark.slow
def test_changed_unlearning_config_retrains_the_stage_but_reuses_the_original(smoke_copy, capsys, monkeypatch):
    cache_before = snapshot_files(smoke_copy / "cache")
    marker = smoke_copy / "seed0" / "stages" / "resnet18" / "finetune.json"
    old_marker = json.loads(marker.read_text())
    _forbid(monkeypatch, originals, "the original")
    calls = _count(monkeypatch, runner)
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--models", "resnet18", "--methods", "finetune",
                          "--lr", "5e-4", "--out", smoke_copy, "--overwrite", "--no-progress"], capsys)
    assert rc == 0, err
    assert calls == ["resnet18 finetune"]
    assert snapshot_files(smoke_copy / "cache") == cache_before
    new_marker = json.loads(marker.read_text())
    assert new_marker["fingerprint"] != old_marker["fingerprint"]
    results = load_results(smoke_copy)
    assert results["config"]["unlearn"]["lr"] == 5e-4
    assert [(r["method"], r["epochs"]) for r in results["rows"]] == [("original", None), ("finetune", 1),
                                                                      ("finetune", 2)]


@pytest.mark.slow
def test_changed_pretraining_config_retrains_the_original(smoke_copy, capsys, monkeypatch):
    calls = _count(monkeypatch, originals)
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--models", "resnet18", "--methods", "lora",
                          "--pretrain-epochs", "1", "--out", smoke_copy, "--overwrite", "--no-progress"], capsys)
    assert rc == 0, err
    assert len(calls) == 1
    assert len(list((smoke_copy / "cache").glob("resnet18-*.safetensors"))) == 2


@pytest.mark.slow
def test_a_damaged_stage_marker_reruns_the_stage(smoke_copy, capsys, monkeypatch):
    marker = smoke_copy / "seed0" / "stages" / "vit" / "lora.json"
    marker.write_text('{"fingerprint": ')
    _forbid(monkeypatch, originals, "the original")
    calls = _count(monkeypatch, runner)
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--out", smoke_copy, "--no-progress"], capsys)
    assert rc == 0, err
    assert calls == ["vit lora"]  # every other marker is intact and reused
    assert len(json.loads(marker.read_text())["rows"]) == 2
