"""Reading causal-LM data and requests, and encoding them: loss on the answer tokens only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunelora.config.causal_lm import LMDataConfig
from prunelora.data.text.examples import read_examples, read_request, split
from prunelora.data.text.tokens import IGNORE, encode, prompts
from prunelora.errors import UserError

CFG = LMDataConfig()


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_question_answer_rows_with_tofus_fields(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [
        {"question": "Q1?", "answer": "A1.", "paraphrased_answer": "P1.", "perturbed_answer": "W1."},
        {"id": "x", "question": "Q2?", "answer": "A2.", "perturbed_answer": ["W2.", "W3."]}])
    kind, examples = read_examples(path, CFG)
    assert kind == "qa" and [e.id for e in examples] == ["0", "x"]
    assert examples[0].perturbed == ("W1.",) and examples[1].perturbed == ("W2.", "W3.")
    assert examples[1].paraphrased is None


def test_plain_text_rows_and_a_mixed_holdout(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"text": "one two"}, {"text": "three"}])
    kind, examples = read_examples(path, CFG)
    assert kind == "text" and examples[0].prompt == "" and examples[0].answer == "one two"
    qa = _jsonl(tmp_path / "q.jsonl", [{"question": "Q?", "answer": "A."}])
    with pytest.raises(UserError, match="holds qa examples but the dataset holds text"):
        read_examples(qa, CFG, "text")


@pytest.mark.parametrize("rows, match", [
    ([{"question": "Q?", "answer": "A.", "id": 1}, {"question": "Q?", "answer": "B.", "id": 1}], "appears twice"),
    ([{"question": "Q?", "answer": "A."}, {"question": "Q?"}], "line 2: 'answer' is missing"),
    ([{"question": "Q?", "answer": "A.", "perturbed_answer": [1]}], "perturbed_answer"),
])
def test_malformed_rows_are_refused_naming_the_line(tmp_path, rows, match):
    with pytest.raises(UserError, match=match):
        read_examples(_jsonl(tmp_path / "d.jsonl", rows), CFG)


def test_a_request_by_ids_or_by_examples(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"id": f"e{i}", "question": f"Q{i}?", "answer": f"A{i}."} for i in range(4)])
    kind, train = read_examples(path, CFG)
    ids = tmp_path / "ids.txt"
    ids.write_text("# two\ne1\n  # a comment may be indented\n\n  e3  \n")
    assert read_request(ids, train, kind, CFG) == ["e1", "e3"]
    ids.write_text("e1\ne3  # not a comment: part of the id\n")  # ids are verbatim: no comment after an id
    with pytest.raises(UserError, match="1 ids match no training example .first: 'e3  # not a comment: part of the "):
        read_request(ids, train, kind, CFG)
    # TOFU's split files: the forget examples themselves, matched by content when their ids differ
    examples = _jsonl(tmp_path / "forget.jsonl", [{"question": "Q2?", "answer": "A2."}])
    assert read_request(examples, train, kind, CFG) == ["e2"]
    everything = tmp_path / "all.txt"
    everything.write_text("e0\ne1\ne2\ne3\n")
    with pytest.raises(UserError, match="nothing would be left"):
        read_request(everything, train, kind, CFG)
    splits = split(kind, train, ["e1"], [], "req")
    assert [e.id for e in splits.forget] == ["e1"] and [e.id for e in splits.retain] == ["e0", "e2", "e3"]


def test_loss_is_on_the_answer_tokens_only(tokenizer, people):
    from prunelora.data.text.examples import from_rows

    _, examples = from_rows(people[0][:3], CFG)
    tokens = encode(tokenizer, examples, 64, torch.device("cpu"))
    for i, ex in enumerate(examples):
        labelled = tokens.labels[i][tokens.labels[i] != IGNORE].tolist()
        answer = tokenizer(" " + ex.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert labelled == answer
    batch = prompts(tokenizer, examples, torch.device("cpu"))
    assert (batch["attention_mask"][:, -1] == 1).all()  # left-padded: every prompt ends at the last column


def test_a_chat_template_wraps_the_question(people):
    from prunelora.data.text.examples import from_rows
    from prunelora.data.text.synthetic import word_tokenizer
    from prunelora.data.text.tokens import prompt_text

    cue = {"question": "user assistant : Question Answer", "answer": "", "paraphrased_answer": "",
           "perturbed_answer": []}
    tok = word_tokenizer(people[0] + [cue])
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}assistant :"
    _, examples = from_rows(people[0][:1], CFG)
    assert prompt_text(tok, examples[0].prompt) == f"user : {examples[0].prompt} assistant :"
    tokens = encode(tok, examples, 64, torch.device("cpu"))
    assert tok.unk_token_id not in tokens.input_ids[0].tolist()


def test_an_example_longer_than_the_context_is_refused(tokenizer, people):
    from prunelora.data.text.examples import from_rows

    _, examples = from_rows(people[0][:1], CFG)
    with pytest.raises(UserError, match="longer than --max-length 3"):
        encode(tokenizer, examples, 3, torch.device("cpu"))
