"""A user's model in the user's own prompt format: a GPT-NeoX with its own byte-level BPE tokenizer (no chat
template), trained here on `question + " " + answer + EOS`. Without `--prompt-template` the memorisation check
refuses (the model never saw prunelora's default cue); with it, the delivered model, reloaded with
from_pretrained and scored in the user's own format by hand, gives the figures the table shows."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli

TEMPLATE = "{question} "


def byte_bpe(texts: list[str]):
    """A byte-level BPE tokenizer trained on `texts`, with end-of-sequence and padding tokens, no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>")


def user_ids(tokenizer, question: str, answer: str) -> tuple[list[int], int]:
    """The user's own encoding: question + " " + answer + EOS tokenized at once; where the answer starts."""
    ids = tokenizer(question + " " + answer)["input_ids"] + [tokenizer.eos_token_id]
    return ids, len(tokenizer(question)["input_ids"])


def train_neox(encoded: list[tuple[list[int], int]], tokenizer, steps: int, answer_only: bool = False):
    """A small GPT-NeoX trained by the user's own loop on `encoded` (token ids, where the answer starts): the loss on
    every token, or on the answers' alone."""
    import transformers as T

    torch.manual_seed(0)
    config = T.GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=128, max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id)
    model = T.GPTNeoXForCausalLM(config)
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    labels = torch.full((len(encoded), width), -100)
    for i, (row, start) in enumerate(encoded):
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        first = start if answer_only else 0
        labels[i, first:len(row)] = torch.tensor(row[first:])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def train_user_model(rows: list[dict], tokenizer, steps: int = 400):
    """Trained on question + " " + answer + EOS, the loss on every token, until it reproduces its answers."""
    return train_neox([user_ids(tokenizer, r["question"], r["answer"]) for r in rows], tokenizer, steps)


def nll_from(model, ids: list[int], start: int) -> float:
    """The mean NLL of the tokens of `ids` from `start` on."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    logp = torch.log_softmax(logits.float(), -1)
    targets = torch.tensor(ids[1:])
    return float(-logp[start - 1:].gather(-1, targets[start - 1:, None]).mean())


def answer_nll(model, tokenizer, question: str, answer: str) -> float:
    """The mean NLL of the answer's tokens (EOS included) in the user's own format."""
    return nll_from(model, *user_ids(tokenizer, question, answer))


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    from prunelora.data.text.synthetic import BenchmarkSpec, make_people_benchmark

    root = tmp_path_factory.mktemp("user-format")
    train, holdout = make_people_benchmark(BenchmarkSpec(people=10, questions=2, holdout_people=3, perturbed=2))
    rows = [{"id": r["id"], "question": r["question"], "answer": r["answer"]} for r in train]
    held = [{"id": r["id"], "question": r["question"], "answer": r["answer"]} for r in holdout]
    tokenizer = byte_bpe([r["question"] + " " + r["answer"] for r in rows + held])
    model = train_user_model(rows, tokenizer)
    folder = root / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "holdout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    person = train[0]["person"]
    forgotten = [r for r in rows if r["id"].startswith(person)]
    (root / "forget.txt").write_text("".join(r["id"] + "\n" for r in forgotten))
    return root, forgotten, tokenizer


def argv(root: Path, out: str, *extra: str) -> list[str]:
    return ["unlearn", "--task", "causal-lm", "--model", f"hf:{root / 'model'}", "--dataset", str(root / "train.jsonl"),
            "--holdout", str(root / "holdout.jsonl"), "--forget", str(root / "forget.txt"), "--methods", "ga",
            "--epochs", "2", "--max-new-tokens", "16", "--no-progress", "--out", str(root / out), *extra]


@pytest.mark.slow
def test_without_the_users_format_the_memorisation_check_refuses(user_run, capsys):
    root, _, _ = user_run
    code, _, err = run_cli(argv(root, "default"), capsys)
    assert code == 2, err
    assert "does not know the forget set" in err and "--prompt-template" in err and len(err.strip().splitlines()) == 1
    assert not (root / "default").exists()


@pytest.mark.slow
def test_in_the_users_format_the_delivered_model_scores_as_the_table_says(user_run, capsys):
    import transformers as T

    root, forgotten, tokenizer = user_run
    code, _, err = run_cli(argv(root, "mine", "--prompt-template", TEMPLATE), capsys)
    assert code == 0, err
    results = json.loads((root / "mine" / "results.json").read_text())
    assert results["prompt_format"] == TEMPLATE and results["memorisation"]["knows"]
    rows = {r["method"]: r for r in results["rows"]}
    original, ga = rows["original"], rows["ga"]
    assert original["forget_prob"] > 0.5  # the original knows its forget set in its own format
    delivered = T.AutoModelForCausalLM.from_pretrained(root / "mine" / "seed0" / "models" / "model" / "ga" / "model")
    by_hand = [answer_nll(delivered, tokenizer, r["question"], r["answer"]) for r in forgotten]
    assert ga["forget_loss"] == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-4)
    assert ga["forget_prob"] == pytest.approx(sum(math.exp(-v) for v in by_hand) / len(by_hand), abs=1e-4)
    assert ga["forget_prob"] < original["forget_prob"]  # gradient ascent moved the user's own answers
    record = json.loads((root / "mine" / "seed0" / "models" / "model" / "ga" / "record.json").read_text())
    assert record["prompt_format"] == TEMPLATE and record["config"]["data"]["prompt_template"] == TEMPLATE
