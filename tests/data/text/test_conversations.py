"""Conversational data (`messages`, the chat format of TRL and most instruction data): a system prompt and earlier
turns are the question's context, written by the tokenizer's chat template, kept through copies, requests, digests
and the files prunelora writes, and refused where the run's format would drop them. End to end: a user's model
trained by the user's own loop on its chat template with a system prompt is unlearned from its conversations, and
the delivered model scores, by hand in that format, what the table says."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from prunelora.config.causal_lm import LMDataConfig
from prunelora.data.text.examples import Asked, from_rows, read_examples, request_digest, to_rows, with_copies
from prunelora.data.text.tokens import check_conversations, prompt_text
from prunelora.errors import UserError
from tests.helpers import run_cli

from .test_user_prompt_format import byte_bpe, nll_from, train_neox

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
SYSTEM = "Answer in one sentence."


def conversation(question: str, answer: str, system: str | None = SYSTEM) -> list[dict]:
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_conversations_are_question_answer_pairs_whose_questions_carry_their_turns(tmp_path):
    cfg = LMDataConfig()
    rows = [{"id": "a", "messages": conversation("Who?", "Ann.")},
            {"id": "b", "messages": conversation("Who?", "Ann.", system=None), "paraphrased_question": "Who is it?"},
            {"id": "c", "question": "Who?", "answer": "Ann."},
            {"id": "d", "messages": conversation("Where?", "Rome.")}]
    kind, examples = from_rows(rows, cfg)
    a, b, c, _ = examples
    assert kind == "qa" and isinstance(a.prompt, Asked) and a.prompt.before == (("system", SYSTEM),)
    assert type(b.prompt) is str and b.content() == c.content() and a.content() != b.content()
    # a copy is the same conversation: forgetting b takes c (the same question and answer), never a
    assert with_copies(examples, ["b"], kind, "r")[0] == ["b", "c"]
    assert with_copies(examples, ["a"], kind, "r")[0] == ["a"]
    assert request_digest([a]) != request_digest([b]) and request_digest([b]) == request_digest([b])
    path = tmp_path / "written.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in to_rows(examples, cfg, kind)))
    assert read_examples(path, cfg) == (kind, examples)  # written back as conversations, read back the same


@pytest.mark.parametrize("messages, why", [
    ([{"role": "user", "content": "Who?"}], "at least two messages"),
    ([{"role": "user", "content": "Who?"}, {"role": "user", "content": "Ann."}], "end with the user's question"),
    ([{"role": "assistant", "content": "Hi"}, {"role": "assistant", "content": "Ann."}], "end with the user's"),
    ([{"role": "user", "content": ["Who?"]}, {"role": "assistant", "content": "Ann."}], "a text 'content'"),
    ("Who? Ann.", "a list of at least two messages"),
])
def test_a_conversation_that_is_not_one_is_one_line(messages, why):
    with pytest.raises(UserError, match=why):
        from_rows([{"id": "x", "messages": messages}], LMDataConfig(), "data.jsonl")


def test_the_chat_template_writes_the_turns_and_other_formats_are_refused(tmp_path):
    tokenizer = byte_bpe(["<|system|>Answer.\n<|user|>Who?\n<|assistant|>Ann."])
    _, examples = from_rows([{"id": "a", "messages": conversation("Who?", "Ann.")}], LMDataConfig())
    with pytest.raises(UserError, match="no chat template to write them"):
        check_conversations(tokenizer, examples, None)
    tokenizer.chat_template = CHAT
    assert prompt_text(tokenizer, examples[0].prompt) == f"<|system|>{SYSTEM}\n<|user|>Who?\n<|assistant|>"
    check_conversations(tokenizer, examples, None)
    with pytest.raises(UserError, match="--prompt-template cannot write"):
        check_conversations(tokenizer, examples, "{question} ")
    assert prompt_text(tokenizer, examples[0].prompt, "Q: {question}") == "Q: Who?"  # other formats ask it bare


def chat_ids(tokenizer, row: dict) -> tuple[list[int], int]:
    """The user's own encoding: the chat template's prompt, then the answer and EOS; where the answer starts."""
    *before, answer = row["messages"]
    prompt = tokenizer(tokenizer.apply_chat_template(before, tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"]
    return prompt + tokenizer(answer["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id], \
        len(prompt)


def train_chat_model(rows: list[dict], tokenizer, steps: int = 300):
    """Trained by the user's own loop on its chat template, the loss on the answers alone."""
    return train_neox([chat_ids(tokenizer, r) for r in rows], tokenizer, steps, answer_only=True)


def answer_nll(model, tokenizer, row: dict) -> float:
    return nll_from(model, *chat_ids(tokenizer, row))


@pytest.mark.slow
def test_a_chat_model_is_unlearned_from_its_conversations_in_its_own_format(tmp_path, capsys):
    import transformers as T

    from prunelora.data.text.synthetic import BenchmarkSpec, make_people_benchmark

    train, holdout = make_people_benchmark(BenchmarkSpec(people=8, questions=2, holdout_people=3, perturbed=2))
    rows = [{"id": r["id"], "messages": conversation(r["question"], r["answer"])} for r in train]
    held = [{"id": r["id"], "messages": conversation(r["question"], r["answer"])} for r in holdout]
    tokenizer = byte_bpe([f"<|system|>{SYSTEM}\n<|user|>{r['question']}\n<|assistant|>{r['answer']}"
                          for r in train + holdout])
    tokenizer.chat_template = CHAT
    model = train_chat_model(rows, tokenizer)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name, data in (("train", rows), ("holdout", held)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    forgotten = [r for r in rows if r["id"].startswith(train[0]["person"])]
    (tmp_path / "forget.txt").write_text("".join(r["id"] + "\n" for r in forgotten))
    out = tmp_path / "run"
    code, _, err = run_cli(["unlearn", "--task", "causal-lm", "--model", f"hf:{folder}", "--dataset",
                            str(tmp_path / "train.jsonl"), "--holdout", str(tmp_path / "holdout.jsonl"), "--forget",
                            str(tmp_path / "forget.txt"), "--methods", "ga", "--epochs", "2", "--max-new-tokens", "8",
                            "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["memorisation"]["knows"]  # the original knows its answers after its own system prompt
    by_method = {r["method"]: r for r in results["rows"]}
    delivered = T.AutoModelForCausalLM.from_pretrained(out / "seed0" / "models" / "model" / "ga" / "model")
    by_hand = [answer_nll(delivered, tokenizer, r) for r in forgotten]
    assert by_method["ga"]["forget_loss"] == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-4)
    without_system = [answer_nll(delivered, tokenizer, {"messages": r["messages"][1:]}) for r in forgotten]
    assert not math.isclose(sum(without_system), sum(by_hand), abs_tol=1e-3)  # the system prompt was in the prompt
    record = out / "seed0" / "models" / "model" / "ga" / "record.json"
    code, stdout, err = run_cli(["verify", str(record)], capsys)
    assert code == 0, stdout + err  # the request's digest, read again from the conversations, is the record's
    code, _, err = run_cli(["unlearn", "--task", "causal-lm", "--model", f"hf:{folder}", "--dataset",
                            str(tmp_path / "train.jsonl"), "--forget", str(tmp_path / "forget.txt"), "--methods", "ga",
                            "--prompt-template", "{question} ", "--no-progress", "--out", str(tmp_path / "no")], capsys)
    assert code == 2 and "--prompt-template cannot write" in err and not Path(tmp_path / "no").exists()
