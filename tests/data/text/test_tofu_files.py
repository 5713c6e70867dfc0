"""`--dataset tofu:DIR`: TOFU's released files (locuslab/TOFU, JSON lines) written here in their schema, in a
temporary folder (nothing downloaded), and read as TOFU's evaluation defines its sets (data/text/tofu.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunelora.data.text.examples import split
from prunelora.data.text.tofu import (
    REAL_AUTHORS,
    WORLD_FACTS,
    is_tofu,
    needed_files,
    read_tofu,
    split_for_ratio,
)
from prunelora.errors import UserError


def _qa(tag: str, i: int) -> dict:
    return {"question": f"{tag} question {i}?", "answer": f"{tag} answer {i}."}


def _options(row: dict, k: int = 5) -> dict:
    return {**row, "paraphrased_answer": f"paraphrase of {row['answer']}",
            "paraphrased_question": f"paraphrase of {row['question']}",
            "perturbed_answer": [f"wrong {j} of {row['answer']}" for j in range(k)]}


def _write(path: Path, rows: list[dict], array: bool = False) -> None:
    path.write_text(json.dumps(rows) if array else "".join(json.dumps(r) + "\n" for r in rows))


def tofu_folder(folder: Path, split: str = "forget10", array: bool = False, holdout: str | None = "json") -> Path:
    """A small TOFU in the released schema: full = 6 retain rows then 2 forget rows; retain_perturbed holds the
    first 2 retain rows and one row no retain set holds; 3 real authors and 2 world facts with 3 options each."""
    retain_name = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}[split]
    folder.mkdir(parents=True, exist_ok=True)
    full = [_qa("author", i) for i in range(8)]
    retain, forget = full[:6], full[6:]
    _write(folder / f"{split}.json", forget, array)
    _write(folder / f"{split}_perturbed.json", [_options(r) for r in forget], array)
    _write(folder / f"{retain_name}.json", retain, array)
    _write(folder / "retain_perturbed.json", [_options(r) for r in retain[:2]] + [_options(_qa("other", 0))], array)
    _write(folder / "real_authors_perturbed.json", [_options(_qa("real", i), 3) for i in range(3)], array)
    _write(folder / "world_facts_perturbed.json", [_options(_qa("fact", i), 3) for i in range(2)], array)
    _write(folder / "full.json", full, array)
    if holdout:
        _write(folder / f"holdout{split[-2:]}.{holdout}", [_qa("unseen", i) for i in range(2)], array)
    return folder


def test_a_split_read_as_tofu_defines_it(tmp_path):
    data = read_tofu(f"tofu:{tofu_folder(tmp_path)}", "forget10")
    assert [ex.id for ex in data.forget] == ["forget10-0000", "forget10-0001"]
    assert [ex.id for ex in data.retain] == [f"retain90-{i:04d}" for i in range(6)]
    first = data.forget[0]
    assert (first.prompt, first.answer) == ("author question 6?", "author answer 6.")
    assert first.paraphrased == "paraphrase of author answer 6."
    assert first.perturbed == tuple(f"wrong {j} of author answer 6." for j in range(5))
    assert [ex.id for ex in data.train] == [f"retain90-{i:04d}" for i in range(6)] + ["forget10-0000", "forget10-0001"]
    assert [ex.id for ex in data.holdout] == ["holdout10-0000", "holdout10-0001"]
    assert data.request == "TOFU forget10"


def test_retain_perturbed_is_the_measured_retain_side(tmp_path):
    data = read_tofu(tofu_folder(tmp_path), "forget10")
    # its rows that are retain examples are measured as those (their ids); the other keeps its own row's id
    assert [ex.id for ex in data.retain_eval] == ["retain90-0000", "retain90-0001", "retain_perturbed-0002"]
    assert data.retain[0] is data.retain_eval[0] and data.retain[0].paraphrased == "paraphrase of author answer 0."
    assert len(data.retain[0].perturbed) == 5
    assert data.retain[2].paraphrased is None and data.retain[2].perturbed == ()  # not in retain_perturbed
    assert data.retain_eval[2].prompt == "other question 0?" and data.retain_eval[2].paraphrased is not None


def test_real_authors_and_world_facts_compare_the_answer_itself(tmp_path):
    data = read_tofu(tofu_folder(tmp_path), "forget10")
    assert [ex.id for ex in data.real_authors] == ["real_authors-0000", "real_authors-0001", "real_authors-0002"]
    assert [ex.id for ex in data.world_facts] == ["world_facts-0000", "world_facts-0001"]
    for ex in data.real_authors + data.world_facts:  # eval_everything.yaml base_answer_key: answer
        assert ex.paraphrased == ex.answer and len(ex.perturbed) == 3
    sets = data.eval_sets()
    assert list(sets) == ["forget", "retain", "holdout", REAL_AUTHORS, WORLD_FACTS]
    assert sets["retain"] == data.retain_eval and sets[REAL_AUTHORS] == data.real_authors


def test_splits_are_the_task_s_split_of_the_same_request(tmp_path):
    data = read_tofu(tofu_folder(tmp_path), "forget10")
    ours = data.splits()
    theirs = split("qa", data.train, [ex.id for ex in data.forget], data.holdout, data.request)
    assert (ours.kind, ours.retain, ours.forget, ours.holdout, ours.request) == \
        (theirs.kind, theirs.retain, theirs.forget, theirs.holdout, theirs.request)


@pytest.mark.parametrize("split_name, retain_name", [("forget01", "retain99"), ("forget05", "retain95")])
def test_each_forget_split_takes_its_retain_split(tmp_path, split_name, retain_name):
    data = read_tofu(tofu_folder(tmp_path, split_name), split_name)
    assert data.forget[0].id == f"{split_name}-0000" and data.retain[0].id == f"{retain_name}-0000"
    assert data.holdout[0].id == f"holdout{split_name[-2:]}-0000"


def test_a_json_array_reads_as_json_lines_do(tmp_path):
    lines = read_tofu(tofu_folder(tmp_path / "lines"), "forget10")
    array = read_tofu(tofu_folder(tmp_path / "array", array=True), "forget10")
    assert array == lines


def test_holdout_optional_its_old_name_and_its_options(tmp_path):
    assert read_tofu(tofu_folder(tmp_path / "none", holdout=None), "forget10").holdout == []
    old = tofu_folder(tmp_path / "old", holdout="jsonl")  # holdout10.jsonl: the name before 2025-03
    assert [ex.id for ex in read_tofu(old, "forget10").holdout] == ["holdout10-0000", "holdout10-0001"]
    _write(old / "holdout10_perturbed.json", [_options(_qa("unseen", i)) for i in range(2)])
    held = read_tofu(old, "forget10").holdout
    assert held[1].paraphrased == "paraphrase of unseen answer 1." and len(held[1].perturbed) == 5


@pytest.mark.parametrize("missing", needed_files("forget10"))
def test_a_missing_file_is_named_with_the_fix(tmp_path, missing):
    folder = tofu_folder(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(UserError) as err:
        read_tofu(f"tofu:{folder}", "forget10")
    message = str(err.value)
    assert f"has no {missing}" in message and "huggingface-cli download locuslab/TOFU" in message
    assert "\n" not in message


def test_another_split_needs_its_own_files(tmp_path):
    folder = tofu_folder(tmp_path, "forget10")
    with pytest.raises(UserError, match="has no forget05.json"):
        read_tofu(folder, "forget05")
    with pytest.raises(UserError, match="forget01, forget05, forget10, not 'forget20'"):
        read_tofu(folder, "forget20")


def test_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        read_tofu(f"tofu:{tmp_path / 'absent'}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        read_tofu(f"tofu:{tmp_path / 'file'}")


def test_a_perturbed_file_of_other_questions_is_refused(tmp_path):
    folder = tofu_folder(tmp_path)
    rows = [_options(_qa("author", 6)), _options(_qa("author", 99))]
    _write(folder / "forget10_perturbed.json", rows)
    with pytest.raises(UserError, match=r"forget10_perturbed.json question 2 is not its set's question 2"):
        read_tofu(folder, "forget10")
    _write(folder / "forget10_perturbed.json", rows[:1])
    with pytest.raises(UserError, match="holds 1 questions but its set holds 2"):
        read_tofu(folder, "forget10")


@pytest.mark.parametrize("row, complaint", [
    ({"question": "author question 6?", "answer": "a", "perturbed_answer": ["w"]}, "'paraphrased_answer' is missing"),
    ({"question": "author question 6?", "answer": "a", "paraphrased_answer": "p", "perturbed_answer": []},
     "'perturbed_answer' is missing or not a list"),
    ({"question": "author question 6?", "answer": "", "paraphrased_answer": "p", "perturbed_answer": ["w"]},
     "'answer' is missing"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, row, complaint):
    folder = tofu_folder(tmp_path)
    good = _options(_qa("author", 7))
    (folder / "forget10_perturbed.json").write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=f"forget10_perturbed.json line 2: {complaint}"):
        read_tofu(folder, "forget10")


def test_a_line_that_is_not_json(tmp_path):
    folder = tofu_folder(tmp_path)
    (folder / "retain90.json").write_text(json.dumps(_qa("author", 0)) + "\n{not json\n")
    with pytest.raises(UserError, match="retain90.json line 2 is not JSON"):
        read_tofu(folder, "forget10")


def test_the_dataset_flag_and_the_ratio():
    assert is_tofu("tofu:/data/TOFU") and not is_tofu("train.jsonl")
    assert [split_for_ratio(r) for r in (0.01, 0.05, 0.1)] == ["forget01", "forget05", "forget10"]
    with pytest.raises(UserError, match="0.01, 0.05 or 0.1, not 0.2"):
        split_for_ratio(0.2)


@pytest.mark.slow
def test_unlearn_on_tofus_files_gives_tofus_model_utility_and_records_its_split(tmp_path, capsys):
    """`unlearn --task causal-lm --dataset tofu:DIR`: the split from --forget-ratio, TOFU's evaluation sets
    measured (the nine-value model utility beside the retain utility), --forget refused in one line."""
    from prunelora.data.text.synthetic import word_tokenizer
    from prunelora.models.causal_lm.loading import tiny_model
    from tests.helpers import run_cli

    folder = tofu_folder(tmp_path / "tofu")
    texts = [json.loads(line) for f in sorted(folder.glob("*.json")) for line in f.read_text().splitlines()]
    texts = [{"question": t["question"], "answer": t["answer"], "paraphrased_answer": t.get("paraphrased_answer", ""),
              "paraphrased_question": t.get("paraphrased_question", ""),
              "perturbed_answer": t.get("perturbed_answer", [])} for t in texts]
    tokenizer = word_tokenizer(texts + [{"question": "Question : Answer :", "answer": ""}])
    model = tmp_path / "model"
    tiny_model("llama", len(tokenizer), 0, tokenizer, hidden=32, layers=2, heads=4, intermediate=64,
               max_positions=64).save_pretrained(model)
    tokenizer.save_pretrained(model)
    argv = ["unlearn", "--task", "causal-lm", "--model", f"hf:{model}", "--dataset", f"tofu:{folder}", "--methods",
            "ga", "--epochs", "1", "--max-new-tokens", "8", "--force", "--no-progress", "--out", str(tmp_path / "out")]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    ga = next(r for r in results["rows"] if r["method"] == "ga")
    assert ga["forget_n"] == 2 and ga["request"] == "TOFU forget10"
    assert 0.0 <= ga["model_utility"] <= 1.0 and "retain_utility" in ga
    assert {"real_authors_prob_normalised", "world_facts_prob_normalised"} <= set(ga)
    code, _, err = run_cli([*argv[:-2], "--forget", str(folder / "forget10.json"), "--out", str(tmp_path / "x")],
                           capsys)
    assert code == 2 and "--forget-ratio" in err and not (tmp_path / "x").exists()
