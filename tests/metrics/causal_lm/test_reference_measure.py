"""measure.py against its references, on a tiny model, by hand: which answer tokens each membership attack reads
(open-unlearning d3d7cf9 src/evals/metrics/utils.py tokenwise_logprobs and evaluate_probability, mia/*.py; MUSE
fcd6651 metrics/privleak.py), the greedy answers ROUGE-L reads (open-unlearning eval_text_similarity and
configs/generation/default.yaml), and PrivLeak against Retrain (MUSE eval.py, open-unlearning privacy.py)."""
from __future__ import annotations

import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from prunelora.config.causal_lm import LMDataConfig
from prunelora.data.text.examples import Example, from_rows
from prunelora.data.text.tokens import IGNORE, encode
from prunelora.metrics.causal_lm import measure as measure_module
from prunelora.metrics.causal_lm.measure import _generate, _token_stats, compare, measure, measure_examples

from ...causal_lm_fixtures import tiny

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(people, tokenizer):
    _, examples = from_rows(people[0], LMDataConfig())
    qa = examples[:4]
    plain = [Example(f"text{i}", "", ex.answer) for i, ex in enumerate(examples[4:8])]
    return tiny("llama", tokenizer), qa, plain


def _by_hand(model, tokenizer, ex: Example) -> dict:
    """One example's answer-token log-probs, ids and vocabulary moments, from the logits (float64)."""
    batch = encode(tokenizer, [ex], 64, CPU).rows(torch.arange(1))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0, :-1]
    labels = batch["labels"][0, 1:]
    keep = labels != IGNORE
    logp = torch.log_softmax(logits.double(), -1)[keep]
    ids = labels[keep]
    lp = logp.gather(-1, ids[:, None])[:, 0].numpy()
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = (p * logp * logp).sum(-1) - mu * mu
    return {"ids": ids.tolist(), "lp": lp, "mu": mu.numpy(), "var": var.numpy()}


def _min_k(values: np.ndarray, k: float = 0.4) -> float:
    """open-unlearning MinKProbAttack.compute_score, sign flipped: mean of the max(1, int(len * k)) lowest."""
    return float(np.mean(np.sort(values)[:max(1, int(len(values) * k))]))


def test_min_k_and_min_k_plus_plus_drop_the_end_of_sequence_token(setup, tokenizer):
    model, qa, plain = setup
    rows = measure_examples(model, tokenizer, qa + plain, 64, CPU, generate=False)
    for i, ex in enumerate(qa + plain):
        hand = _by_hand(model, tokenizer, ex)
        assert hand["ids"][-1] == tokenizer.eos_token_id  # the tokenizer appended it
        lp, mu, var = hand["lp"][:-1], hand["mu"][:-1], hand["var"][:-1]  # tokenwise_logprobs' [:-1]
        assert rows["mia_min_k"][i] == pytest.approx(_min_k(lp), rel=1e-5)
        z = (lp - mu) / np.sqrt(np.maximum(var, 1e-6))
        assert rows["mia_min_k_plus_plus"][i] == pytest.approx(_min_k(z), rel=1e-4)


def test_loss_and_zlib_keep_eos_for_pairs_and_drop_it_for_plain_text(setup, tokenizer):
    model, qa, plain = setup
    rows = measure_examples(model, tokenizer, qa + plain, 64, CPU, generate=False)
    for i, ex in enumerate(qa + plain):
        hand = _by_hand(model, tokenizer, ex)
        # open-unlearning's LOSSAttack: avg_loss over every labelled token (a pair's EOS included); MUSE's
        # compute_ppl on plain text, which it tokenizes without an EOS: the text's tokens only
        lp = hand["lp"] if ex.prompt else hand["lp"][:-1]
        avg = -float(np.mean(lp))
        assert rows["mia_loss"][i] == pytest.approx(-avg, rel=1e-5)
        # ZLIBAttack: avg_loss / len(zlib.compress(decoded answer tokens, special tokens skipped))
        text = tokenizer.decode(hand["ids"], skip_special_tokens=True)
        assert rows["mia_zlib"][i] == pytest.approx(-avg / len(zlib.compress(text.encode("utf-8"))), rel=1e-5)
        if ex.prompt:  # TOFU's probability and loss count the EOS too
            assert rows["avg_nll"][i] == pytest.approx(-float(np.mean(hand["lp"])), rel=1e-5)


def test_only_a_trailing_end_of_sequence_id_is_dropped(tokenizer):
    model = tiny("llama", tokenizer)
    eos = tokenizer.eos_token_id
    ids = torch.tensor([[2, 10, 11, 12, eos], [2, 10, 11, 12, 13]])
    labels = ids.clone()
    labels[:, :2] = IGNORE  # the prompt: [<s>, 10]; answers [11, 12, eos] and [11, 12, 13]
    stats = _token_stats(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}, eos)
    assert stats[0].ids.tolist() == [11, 12] and stats[0].ends_with_eos
    assert stats[1].ids.tolist() == [11, 12, 13] and not stats[1].ends_with_eos
    assert len(stats[1].logprobs) == len(stats[1].mu) == len(stats[1].sigma) == 3
    nothing = _token_stats(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}, None)
    assert [len(s.ids) for s in nothing] == [3, 3]


class _Scripted(nn.Module):
    """A stand-in for generate(): appends scripted new tokens (up to max_new_tokens) and records its arguments."""

    def __init__(self, new_rows: list[list[int]], context: int) -> None:
        super().__init__()
        self.new_rows = torch.tensor(new_rows)
        self.config = SimpleNamespace(max_position_embeddings=context)
        self.calls: list[dict] = []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.calls.append(kwargs)
        new = self.new_rows[:len(input_ids), :kwargs["max_new_tokens"]]
        return torch.cat([input_ids, new], 1)


def test_generation_is_greedy_up_to_200_new_tokens_cut_at_each_rows_eos(setup, tokenizer):
    _, qa, _ = setup
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    words = [10, 11, 12, 13]
    script = [[words[0], words[1], eos, words[2]], [words[3], words[2], words[1], words[0]], [eos, pad, pad, pad]]
    stub = _Scripted(script, context=4096)
    answers = _generate(stub, tokenizer, qa[:3], 200, CPU)
    assert answers == [tokenizer.decode(words[:2]).strip(), tokenizer.decode([13, 12, 11, 10]).strip(), ""]
    call = stub.calls[0]
    assert call["max_new_tokens"] == 200 and call["do_sample"] is False and call["eos_token_id"] == eos


def test_generation_stops_at_the_models_context(setup, tokenizer):
    _, qa, _ = setup
    stub = _Scripted([[10] * 300], context=24)
    _generate(stub, tokenizer, qa[:1], 200, CPU)
    width = measure_module.prompts(tokenizer, qa[:1], CPU)["input_ids"].shape[1]
    assert stub.calls[0]["max_new_tokens"] == 24 - width


def test_measure_passes_max_new_tokens_to_generation(setup, tokenizer, monkeypatch):
    model, qa, _ = setup
    seen: list[int] = []

    def fake(model, tokenizer, examples, max_new_tokens, device, template=None):
        seen.append(max_new_tokens)
        return ["" for _ in examples]

    monkeypatch.setattr(measure_module, "_generate", fake)
    measure(model, tokenizer, {"forget": qa[:2]}, 64, CPU, max_new_tokens=7)
    measure(model, tokenizer, {"forget": qa[:2]}, 64, CPU)
    assert seen == [7, 200]


def test_compare_gives_muses_privleak_and_leaves_it_out_when_undefined():
    def run(auc: float) -> dict:
        return {"per_split": {}, "summary": {"mia_min_k_auc": auc}}

    # (AUC_r - AUC_u) / (1 - AUC_r) * 100 = (0.5 - 0.97) / 0.5 * 100
    assert compare(run(0.97), run(0.50))["privleak"] == pytest.approx(-94.0)
    assert "privleak" not in compare(run(0.97), run(1.0))
