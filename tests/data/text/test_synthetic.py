"""The embedded people benchmark: deterministic, well formed, whole-person forget sets, a lossless tokenizer."""
from __future__ import annotations

import pytest

from prunelora.data.text.synthetic import (
    ATTRIBUTES,
    KINDS,
    SPECIAL_TOKENS,
    BenchmarkSpec,
    forget_people,
    make_people_benchmark,
    row_texts,
    word_tokenizer,
)
from prunelora.storage import read_jsonl, write_jsonl

SPEC = BenchmarkSpec()


@pytest.fixture(scope="module")
def bench() -> tuple[list[dict], list[dict]]:
    return make_people_benchmark(SPEC)


@pytest.fixture(scope="module")
def tokenizer(bench):
    train, holdout = bench
    return word_tokenizer(train + holdout)


def kind_of(row: dict) -> str:
    return row["id"].split("-", 1)[1]


def name_of(row: dict) -> str:
    """The person's name, cut out of the question by its template."""
    head, _, tail = ATTRIBUTES[kind_of(row)].question.partition("{name}")
    question = row["question"]
    assert question.startswith(head) and question.endswith(tail), question
    return question[len(head):len(question) - len(tail)]


def stated_value(row: dict, text: str, template: str = "answer") -> str:
    """The one value of the row's kind that the template states in `text` (rows carry no value field)."""
    attribute = ATTRIBUTES[kind_of(row)]
    matches = [v for v in attribute.values if attribute.fill(getattr(attribute, template), name_of(row), v) == text]
    assert len(matches) == 1, (text, matches)
    return matches[0]


def test_same_seed_same_rows_other_seed_other_rows(bench):
    assert make_people_benchmark(BenchmarkSpec()) == bench
    other = make_people_benchmark(BenchmarkSpec(seed=1))
    assert other[0] != bench[0] and other[1] != bench[1]


def test_shape_and_unique_ids(bench):
    train, holdout = bench
    assert len(train) == SPEC.people * SPEC.questions and len(holdout) == SPEC.holdout_people * SPEC.questions
    ids = [row["id"] for row in train + holdout]
    assert len(ids) == len(set(ids))
    for row in train + holdout:
        assert set(row) == {"id", "person", "question", "answer", "paraphrased_answer", "paraphrased_question",
                            "perturbed_answer"}
        assert row["paraphrased_question"] != row["question"] and name_of(row) in row["paraphrased_question"]
        assert row["id"].startswith(row["person"] + "-") and kind_of(row) in KINDS
        assert len(row["answer"].split()) < 16 and row["question"].endswith("?")
    per_person: dict[str, int] = {}
    for row in train:
        per_person[row["person"]] = per_person.get(row["person"], 0) + 1
    assert len(per_person) == SPEC.people and set(per_person.values()) == {SPEC.questions}


def test_holdout_people_are_new(bench):
    train, holdout = bench
    train_people = {row["person"] for row in train}
    holdout_people = {row["person"] for row in holdout}
    assert not train_people & holdout_people
    assert sorted(holdout_people) == [f"p{i:04d}" for i in range(SPEC.people, SPEC.people + SPEC.holdout_people)]
    names = {person: {name_of(row) for row in rows} for person, rows in _by_person(train + holdout).items()}
    assert all(len(n) == 1 for n in names.values())  # one name per person
    train_names = {next(iter(names[p])) for p in train_people}
    assert not train_names & {next(iter(names[p])) for p in holdout_people}
    assert len(train_names) == SPEC.people


def _by_person(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["person"], []).append(row)
    return grouped


def test_perturbed_answers_are_distinct_wrong_answers(bench):
    for row in bench[0] + bench[1]:
        wrong = row["perturbed_answer"]
        assert len(wrong) == SPEC.perturbed
        assert len(set(wrong)) == len(wrong) and row["paraphrased_answer"] not in wrong
        truth = stated_value(row, row["answer"])
        # TOFU's perturbed answers keep the paraphrase's wording and change the fact: the truth ratio then compares
        # facts, not wordings
        assert all(stated_value(row, w, "paraphrase") != truth for w in wrong)


def test_paraphrase_restates_the_true_value(bench):
    for row in bench[0] + bench[1]:
        assert row["paraphrased_answer"] != row["answer"]
        truth = stated_value(row, row["answer"])
        assert stated_value(row, row["paraphrased_answer"], "paraphrase") == truth
        assert truth in row["paraphrased_answer"] and name_of(row) in row["paraphrased_answer"]


@pytest.mark.parametrize("kwargs", [dict(questions=len(KINDS) + 1), dict(questions=0), dict(people=0),
                                    dict(perturbed=len(ATTRIBUTES["award"].values))])
def test_spec_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        make_people_benchmark(BenchmarkSpec(**kwargs))


def test_every_kind_can_be_asked():
    train, _ = make_people_benchmark(BenchmarkSpec(people=3, questions=len(KINDS), holdout_people=0))
    assert len(train) == 3 * len(KINDS) and {kind_of(row) for row in train} == set(KINDS)


@pytest.mark.parametrize(("fraction", "count"), [(0.01, 1), (0.05, 5), (0.1, 10), (0.056, 6)])
def test_forget_people_takes_whole_people(bench, fraction, count):
    train, _ = bench
    ids = forget_people(train, fraction, seed=3)
    assert ids == forget_people(train, fraction, seed=3)
    chosen = {row["person"] for row in train if row["id"] in ids}
    assert len(chosen) == count
    assert set(ids) == {row["id"] for row in train if row["person"] in chosen}
    assert len(ids) == count * SPEC.questions


def test_forget_people_seed_changes_the_draw(bench):
    train, _ = bench
    assert forget_people(train, 0.1, seed=0) != forget_people(train, 0.1, seed=1)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_forget_people_rejects_fraction_outside_open_interval(bench, fraction):
    with pytest.raises(ValueError):
        forget_people(bench[0], fraction)


def test_tokenizer_knows_every_word(bench, tokenizer):
    unk = tokenizer.unk_token_id
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token) == SPECIAL_TOKENS
    assert tokenizer.chat_template is None
    for row in bench[0] + bench[1]:
        for text in row_texts(row):
            ids = tokenizer(text)["input_ids"]
            assert unk not in ids, text
            words = tokenizer.convert_ids_to_tokens(ids)
            assert tokenizer.decode(ids) == " ".join(words)
            assert "".join(words) == "".join(text.split())  # nothing lost but spaces
    assert tokenizer("Zzyzx unheard")["input_ids"] == [unk, unk]


def test_tokenizer_round_trips_through_save_pretrained(bench, tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.pad_token_id, loaded.unk_token_id, loaded.bos_token_id, loaded.eos_token_id) == (0, 1, 2, 3)
    for row in bench[0] + bench[1]:
        for text in row_texts(row):
            ids = tokenizer(text)["input_ids"]
            assert loaded(text)["input_ids"] == ids
            assert loaded.decode(ids) == tokenizer.decode(ids)


def test_tokenizer_vocabulary_is_deterministic_and_sorted(bench, tokenizer):
    train, holdout = bench
    again = word_tokenizer(list(reversed(train + holdout)))
    assert again.get_vocab() == tokenizer.get_vocab()
    words = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])[len(SPECIAL_TOKENS):]
    assert [w for w, _ in words] == sorted(w for w, _ in words)


def test_jsonl_round_trip(bench, tmp_path):
    rows = bench[0][:7] + [{"id": "x", "text": "Zoë — naïve ✓", "perturbed_answer": []}]
    path = tmp_path / "rows.jsonl"
    write_jsonl(rows, path)
    assert read_jsonl(path) == rows
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(rows)
    write_jsonl(rows[:2], path)  # replaces, leaves no temporary file
    assert read_jsonl(path) == rows[:2]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
