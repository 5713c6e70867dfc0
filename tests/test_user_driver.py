"""`unlearn --model hf:DIR` through the stage driver: a row and a deliverable per budget, resumed after an
interruption with the same numbers, `until` and the longest budget's folder where users find it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import prunelora.runner as runner
from prunelora.data import class_splits, load_dataset, to_float
from prunelora.user_run import UserSubject

from .helpers import run_cli, same
from .test_user_models import saved_hf

QUIET = ["--no-progress", "--preset", "smoke"]
TIMING = ("sec", "_mb", "memory", "rss", "cost_vs", "time")


def argv(source: Path, out: Path, *extra: str) -> list:
    return ["unlearn", "--model", f"hf:{source}", "--method", "finetune,lora", "--epochs", "1,2", "--out", out,
            *extra, *QUIET]


def measured(rows: list[dict]) -> list[dict]:
    """The rows without what depends on the clock (seconds, memory, their ratios)."""
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)} for r in rows]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return saved_hf("vit", tmp_path_factory)


@pytest.fixture(scope="module")
def complete(source, tmp_path_factory) -> Path:
    """The command run once, uninterrupted."""
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("complete") / "run"
    assert main([str(a) for a in argv(source, out)]) == 0
    return out


@pytest.mark.slow
def test_every_budget_has_its_row_and_its_deliverable(complete):
    from transformers import AutoModelForImageClassification as Auto

    results = json.loads((complete / "results.json").read_text())
    rows = results["rows"]
    assert [(r["method"], r["epochs"]) for r in rows] == [("original", None), ("finetune", 1), ("finetune", 2),
                                                           ("lora", 1), ("lora", 2)]
    name = rows[0]["model"]
    models = complete / "seed0" / "models" / name
    assert {r["model_dir"] for r in rows[1:]} == {f"seed0/models/{name}/{m}" for m in
                                                  ("finetune_e1", "finetune", "lora_e1", "lora")}
    assert (models / "lora" / "adapter" / "adapter_config.json").is_file()  # the longest budget's, where it was
    assert not (models / "lora_e1" / "adapter").exists() and not (models / "finetune" / "adapter").exists()
    splits = class_splits(load_dataset("digits"), 3, 24, 12, 0)
    x = (to_float(splits.test_retain.images) - 0.5) / 0.5
    for row in rows[1:]:
        folder = complete / row["model_dir"]
        record = json.loads((folder / "prunelora.json").read_text())
        assert record["epochs"] == row["epochs"] and len(record["history"]) == row["epochs"]
        assert record["forgotten"] == row["forgotten"] and record["metrics"]["ua"] == row["ua"]
        with np.load(complete / row["logits_file"]) as saved:
            expected = torch.from_numpy(saved["test_retain_logits"])
        with torch.no_grad():
            got = Auto.from_pretrained(folder / "model").eval()(pixel_values=x).logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_finished_stages(source, complete, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = UserSubject.run

    def interrupted(self, method, *args, **kwargs):
        if method == "lora":
            raise KeyboardInterrupt
        return real(self, method, *args, **kwargs)

    monkeypatch.setattr(UserSubject, "run", interrupted)
    rc, _, err = run_cli(argv(source, out), capsys)
    assert rc == 130, err
    assert (out / "seed0" / "stages").is_dir() and not (out / "results.json").exists()
    monkeypatch.setattr(UserSubject, "run", real)
    trained: list[str] = []
    real_fit = runner.fit

    def counting(*args, **kwargs):
        trained.append(kwargs.get("desc"))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(runner, "fit", counting)
    rc, _, err = run_cli(argv(source, out), capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["reused"]["stages"] == 1  # finetune (the user's model is no stage: it is given)
    assert len(trained) == 1 and trained[0].endswith(" lora")
    complete_rows = json.loads((complete / "results.json").read_text())["rows"]
    assert same(measured(results["rows"]), measured(complete_rows))
    # a third run trains nothing and reuses both stages
    trained.clear()
    rc, _, err = run_cli(argv(source, out), capsys)
    assert rc == 0, err
    again = json.loads((out / "results.json").read_text())
    assert again["reused"]["stages"] == 2 and trained == []
    assert same(measured(again["rows"]), measured(complete_rows))


@pytest.mark.slow
def test_until_stops_every_method_at_its_own_epoch(source, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(["unlearn", "--model", f"hf:{source}", "--method", "finetune", "--epochs", "1,2",
                          "--until-forget-acc", "100", "--out", out, *QUIET], capsys)
    assert rc == 0, err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["method"], r["epochs"]) for r in rows] == [("original", None), ("finetune", 1)]
    assert rows[1]["model_dir"].endswith("/finetune") and rows[1]["forgotten"] is True


@pytest.mark.slow
def test_a_user_model_trains_with_the_datas_own_augmentation_and_recipe(source, tmp_path, capsys, monkeypatch):
    """Digits are not mirror-symmetric: a user model's augmenting method (RL) must not flip them, as a registry
    model's does not, and what results.json records as the method's settings is what ran; the run's
    pre-training recipe (Retrain's) and precision reach the method."""
    import prunelora.user_run as user_run

    seen = {}
    context = user_run.user_context

    def spy(config, *args, flip=True, **kwargs):
        seen["flip"], seen["pretrain_lr"], seen["precision"] = flip, config.pretrain.lr, config.precision
        return context(config, *args, flip=flip, **kwargs)

    monkeypatch.setattr(user_run, "user_context", spy)
    out = tmp_path / "run"
    rc, _, err = run_cli(["unlearn", "--model", f"hf:{source}", "--method", "rl", "--epochs", "1", "--out", out,
                          "--set", "pretrain.lr=0.02", *QUIET], capsys)
    assert rc == 0, err
    assert seen == {"flip": False, "pretrain_lr": 0.02, "precision": "fp32"}
    settings = json.loads((out / "results.json").read_text())["method_settings"]["rl"]
    assert all(s["augmentation"]["flip"] is False for s in settings.values()), settings
