"""`prunelora search` end to end on a user's own model with a named-sample request, no Retrain; its answer."""
from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest
import torch

from prunelora.search.command import answer, changed
from prunelora.search.engine import SearchOutcome, TrialRecord
from prunelora.search.target import Judgement

from ..helpers import run_cli

FACTORY = "py:tests.zoo:TorchvisionResNet18"
SIZES = ["--preset", "smoke", "--set", "data.train_per_class=100", "--set", "data.test_per_class=60"]


def trial(number: int, method: str, cost: int, passed: bool, distance: float = 0.0) -> TrialRecord:
    return TrialRecord(number=number, state="complete", setting={"method": method}, defaults=number == 0,
                       cost=cost, seconds=1.0, passed=passed, distance=distance,
                       verdict="indistinguishable from unseen data on every test" if passed else "still recognised")


def outcome(trials: list[TrialRecord]) -> SearchOutcome:
    passing = [t for t in trials if t.passed]
    winner = min(passing, key=lambda t: t.cost) if passing else None
    best = winner or min(trials, key=lambda t: t.distance)
    return SearchOutcome(trials=trials, winner=winner, best=best, spent=sum(t.cost for t in trials), seconds=2.0,
                         budget_samples=None, budget_seconds=None)


def test_the_answer_ships_only_what_passes_on_held_out_data_within_retrains_cost():
    passed = Judgement(True, 0.0, "indistinguishable from unseen data on every test")
    failed = Judgement(False, 0.1, "still recognised")
    found = outcome([trial(0, "finetune", 300, False, 0.2), trial(1, "prunelora", 200, True)])
    assert answer(found, 1000, passed).startswith("Ship prunelora (found in 2 trials, 50% of Retrain's estimated cost)")
    assert answer(found, 1000, passed, estimated=False).startswith("Ship prunelora (found in 2 trials, 50% of "
                                                                   "Retrain's cost)")
    assert "but not on held-out data (still recognised): retrain" in answer(found, 1000, failed)
    assert "retraining would have been cheaper" in answer(found, 400, passed)  # 500 samples spent, Retrain 400
    none = outcome([trial(0, "finetune", 300, False, 0.2)])
    assert answer(none, 1000).startswith("None of 1 settings passed within the budget: retrain; the closest: finetune")


def test_the_winners_file_states_what_differs_from_its_preset():
    defaults = {"preset": "smoke", "data": {"forget_class": 3, "train_per_class": 24}, "seeds": [0]}
    chosen = {"preset": "smoke", "data": {"forget_class": 3, "train_per_class": 100}, "seeds": [0]}
    assert changed(chosen, defaults) == {"data": {"train_per_class": 100}}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A search for a random-weight conv net of the user's (py: factory) and 120 named digits samples."""
    from safetensors.torch import save_file

    from prunelora.cli import main

    from ..zoo import TorchvisionResNet18

    root = tmp_path_factory.mktemp("search")
    torch.manual_seed(0)
    weights = root / "resnet.safetensors"
    save_file(TorchvisionResNet18().state_dict(), str(weights))
    request = root / "request.txt"
    request.write_text("\n".join(str(i) for i in range(0, 1440, 12)) + "\n")
    out = root / "out"
    assert main(["search", "--model", FACTORY, "--weights", str(weights), "--forget", str(request), *SIZES,
                 "--methods", "finetune", "--trials", "2", "--budget", "300", "--no-progress", "--out", str(out)]) == 0
    return out, weights, request


@pytest.mark.slow
def test_a_named_request_on_the_users_model_finds_its_answer_through_search(searched):
    out, _, request = searched
    (block,) = json.loads((out / "search.json").read_text())["searches"]
    assert not block["with_retrain"] and block["budget_seconds"] == 300
    assert 1 <= len(block["trials"]) <= 2
    selection, verdict = set(block["selection_ids"]), set(block["verdict_ids"])
    assert selection and verdict and not selection & verdict  # the verdict is read on data the search never saw
    assert f"**{block['answer']}**" in (out / "results.md").read_text().split("\n\n")[1]  # the answer on top
    with (out / "trials.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(block["trials"])
    assert "search" in (out / "report.html").read_text().lower()
    assert block["winner"] is not None  # Finetune at its defaults passes on the selection half (distance 0)
    assert block["verdict_on_held_out"] and isinstance(block["passed_on_held_out"], bool)
    folder = out / "seed0" / "models" / "TorchvisionResNet18" / block["winner"]["setting"]["method"]
    record = json.loads((folder / "record.json").read_text())
    assert record["search"]["trials"] == len(block["trials"])
    assert record["search"]["verdict_ids"] == block["verdict_ids"]
    assert record["search"]["selection_ids"] == block["selection_ids"]
    assert record["verdict"]["standalone"] == block["verdict_on_held_out"]  # what the record ships: held-out
    row = next(r for r in json.loads((out / "results.json").read_text())["rows"]
               if r["method"] == block["winner"]["setting"]["method"])
    assert row["total_sec"] == pytest.approx(block["seconds"])  # the delivered method's cost: the whole search's
    assert row["search_trials"] == len(block["trials"]) and row["winner_total_sec"] < row["total_sec"]

@pytest.mark.slow
def test_verify_rechecks_the_winner_on_the_verdict_half_and_the_reproduce_line_runs(searched, tmp_path, capsys):
    out, _, _ = searched
    (block,) = json.loads((out / "search.json").read_text())["searches"]
    method = block["winner"]["setting"]["method"]
    record = out / "seed0" / "models" / "TorchvisionResNet18" / method / "record.json"
    rc, printed, err = run_cli(["verify", record, "--model-factory", FACTORY, "--factory-path", "."], capsys)
    assert rc == 0, printed + err
    assert "verified" in printed
    line = shlex.split(block["reproduce"])
    assert line[:2] == ["prunelora", "unlearn"] and "--config" in line
    rc, _, err = run_cli([*line[1:], "--no-progress", "--out", tmp_path / "again"], capsys)
    assert rc == 0, err
    again = {r["method"]: r for r in json.loads((tmp_path / "again" / "results.json").read_text())["rows"]}
    searched_rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert again[method]["ua"] == pytest.approx(searched_rows[method]["ua"])  # the same model, without searching


def test_a_causal_lm_winners_file_reads_back_as_its_configuration(tmp_path):
    import dataclasses

    from prunelora.config.causal_lm import resolve
    from prunelora.search.command import write_winner_config

    chosen = resolve(None, {"preset": "smoke", "unlearn": {"epochs": 7, "lr": 3e-4}, "data": {"holdout": "h.jsonl"}})
    defaults = dataclasses.asdict(resolve(None, {"preset": "smoke"}))
    path = write_winner_config(tmp_path, "tiny llama", 2, dataclasses.asdict(chosen), defaults)
    assert path.name == "winner-tiny_llama-seed2.yaml"
    again = resolve(str(path), {})
    assert again.unlearn == chosen.unlearn and again.data == chosen.data and again.seeds == [2]


@pytest.mark.slow
def test_a_causal_lm_search_keeps_selection_and_verdict_apart(tmp_path, capsys):
    out = tmp_path / "lm"
    rc, printed, err = run_cli(["search", "--task", "causal-lm", "--preset", "smoke", "--trials", "2", "--budget",
                                "200", "--methods", "finetune,npo", "--no-progress", "--out", out], capsys)
    assert rc == 0, err
    (block,) = json.loads((out / "search.json").read_text())["searches"]
    assert block["task"] == "causal-lm" and 1 <= len(block["trials"]) <= 2
    assert {t["setting"]["method"] for t in block["trials"]} <= {"finetune", "npo"}
    selection, verdict = set(block["selection_ids"]), set(block["verdict_ids"])
    assert selection and verdict and not selection & verdict
    assert block["answer"] in printed


def test_a_search_without_held_out_data_is_refused_not_answered_retrain(tmp_path, capsys, people, user_model):
    """Every trial is judged on held-out data: with none, "retrain" would be no answer at all."""
    from ..data.test_files import write_mixed_folder

    images = write_mixed_folder(tmp_path / "images")  # class folders only: no test split
    out = tmp_path / "image-search"
    rc, _, err = run_cli(["search", "--dataset", images, "--image-size", "16", "--forget-class", "k1", "--models",
                          "resnet18", *SIZES[:2], "--no-progress", "--out", out], capsys)
    assert rc == 2 and "search judges every trial on test images" in err and not out.exists()
    train, _ = people
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in train))
    (tmp_path / "forget.txt").write_text(train[0]["id"] + "\n")
    out = tmp_path / "lm-search"
    rc, _, err = run_cli(["search", "--task", "causal-lm", "--model", f"hf:{user_model}", "--dataset", data,
                          "--forget", tmp_path / "forget.txt", "--force", "--no-progress", "--out", out], capsys)
    assert rc == 2 and "give --holdout a .jsonl of at least 2 such examples (0 given)" in err and not out.exists()
