"""The field's LLM measures of one model on forget, retain and holdout examples: per example, then summarised.

Per example (exported, so a reader can recompute every figure): the answer's mean and summed token NLL and
its token count, the paraphrased and perturbed answers' mean NLLs and the truth ratio (TOFU), the greedy
answer and its ROUGE-L recall, and the four membership scores (loss, zlib, Min-K %, Min-K %++). Summaries:
probability, ROUGE-L and loss per split, TOFU's truth-ratio scores and model utility (the harmonic mean of
the retain split's probability, ROUGE-L and truth-ratio score; TOFU also averages real-author and world-fact
sets, which a user's data does not have), and each attack's AUC, forget (members) vs holdout. Against
Retrain (compare): TOFU's forget quality (KS test of the forget truth ratios) and MUSE's PrivLeak (of the
Min-K % attack, MUSE's choice).

The tokens each measure reads follow its reference (open-unlearning, commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a;
MUSE, swj0419/muse_bench commit fcd6651da8bcf34744fb9a1cc69bb856ab3eb277). An answer's tokens end with the
end-of-sequence token the tokenizer appends (data/text/tokens.py). Probability, loss and the truth ratio
count it (TOFU, open-unlearning evaluate_probability). Min-K % and Min-K %++ drop it (open-unlearning
tokenwise_logprobs: "-1 to ignore eos prediction"). The loss and zlib attacks keep it for question/answer
pairs (open-unlearning's LOSS and ZLIB attacks average every answer token) and drop it for plain text, which
MUSE and open-unlearning's pretraining examples tokenize without one. A token is dropped only where the last
answer token is the end-of-sequence id. ROUGE-L reads greedy answers of up to max_new_tokens (200, open-
unlearning's configs/generation/default.yaml), each cut at its first end-of-sequence token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.text.examples import Example
from ...data.text.tokens import IGNORE, encode_pairs, prompts
from ...errors import UserError
from ...objectives.causal_lm.base import answer_nll
from ...registry import CAUSAL_LM
from ..entry import TextEvidenceInputs
from ..registry import EVIDENCE
from . import evidence as _evidence  # noqa: F401 - registers the task's evidence entries
from . import robustness, scores
from .robustness import RelearnAttack

EVAL_BATCH = 32
MAX_NEW_TOKENS = 200  # open-unlearning configs/generation/default.yaml (greedy, use_cache)


@dataclass
class MemberTokens:
    """One example's answer tokens as the membership attacks read them: the predicted answer ids, their
    log-probabilities, and the mean and std of log p over the vocabulary at each (Min-K %++), with the trailing
    end-of-sequence token dropped where the answer ends with one (ends_with_eos)."""

    ids: np.ndarray
    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    ends_with_eos: bool


@torch.no_grad()
def _token_stats(model: nn.Module, batch: dict[str, torch.Tensor], eos_id: int | None) -> list[MemberTokens]:
    """Per example: its answer tokens' statistics for the membership attacks (MemberTokens)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    logp = F.log_softmax(logits, -1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    # E[(log p - mu)^2]: the reference's E[log p^2] - mu^2, without its cancellation in float32
    sigma = (p * (logp - mu[..., None]) ** 2).sum(-1).sqrt()
    chosen = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    out = []
    for row in range(len(labels)):
        keep = labels[row] != IGNORE
        ids = labels[row][keep]
        eos = eos_id is not None and len(ids) > 0 and int(ids[-1]) == eos_id
        n = len(ids) - 1 if eos else len(ids)
        out.append(MemberTokens(ids[:n].cpu().numpy(), chosen[row][keep][:n].cpu().numpy(),
                                mu[row][keep][:n].cpu().numpy(), sigma[row][keep][:n].cpu().numpy(), eos))
    return out


def membership_nll(avg_nll: float, member: MemberTokens, plain_text: bool) -> float:
    """The average NLL the loss and zlib attacks read: every answer token of a question/answer pair, the
    end-of-sequence token included (open-unlearning's LOSSAttack, evaluate_probability); the text's own tokens
    for plain text (MUSE's compute_ppl, whose text has no end-of-sequence token)."""
    if plain_text and member.ends_with_eos and member.logprobs.size:
        return float(-np.mean(member.logprobs.astype(np.float64)))
    return avg_nll


def _avg_nll(model: nn.Module, tokenizer, pairs: list[tuple[str, str]], max_length: int,
             device: torch.device, template: str | None = None) -> np.ndarray:
    """Mean answer-token NLL of each (prompt, answer) pair."""
    values = []
    for start in range(0, len(pairs), EVAL_BATCH):
        chunk = pairs[start:start + EVAL_BATCH]
        tokens = encode_pairs(tokenizer, chunk, [str(i) for i in range(len(chunk))], max_length, device, template)
        total, counts = answer_nll(model, tokens.rows(torch.arange(len(chunk), device=device)))
        values.append((total / counts.clamp(min=1)).cpu().numpy())
    return np.concatenate(values) if values else np.zeros(0)


def _context(model: nn.Module) -> int | None:
    """The model's context length in tokens (None where its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _until_eos(ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """A generated row up to (not including) its first end-of-sequence token."""
    if eos_id is None:
        return ids
    hits = (ids == eos_id).nonzero()
    return ids[:int(hits[0])] if len(hits) else ids


def _generate(model: nn.Module, tokenizer, examples: list[Example], max_new_tokens: int,
              device: torch.device, template: str | None = None) -> list[str]:
    """Greedy answers to the examples' prompts, EVAL_BATCH at a time (left-padded), as open-unlearning's
    eval_text_similarity (src/evals/metrics/utils.py, commit d3d7cf9): up to max_new_tokens new tokens, no
    sampling, each row cut at its first end-of-sequence token, decoded without special tokens, cut at the
    decoded end-of-sequence text, stripped. A model whose context ends sooner generates up to its context."""
    out: list[str] = []
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    eos_text = tokenizer.decode([eos]) if eos is not None else ""
    context = _context(model)
    for start in range(0, len(examples), EVAL_BATCH):
        chunk = examples[start:start + EVAL_BATCH]
        inputs = prompts(tokenizer, chunk, device, template)
        width = inputs["input_ids"].shape[1]
        budget = max_new_tokens if context is None else min(max_new_tokens, context - width)
        if budget < 1:
            out.extend([""] * len(chunk))
            continue
        generated = model.generate(**inputs, max_new_tokens=budget, do_sample=False, use_cache=True,
                                   pad_token_id=pad, eos_token_id=eos)
        for row in generated[:, width:]:
            text = tokenizer.decode(_until_eos(row, eos), skip_special_tokens=True,
                                    clean_up_tokenization_spaces=True)
            out.append(text.split(eos_text)[0] if eos_text else text)
    return [text.strip() for text in out]


@torch.no_grad()
def measure_examples(model: nn.Module, tokenizer, examples: list[Example], max_length: int,
                     device: torch.device, generate: bool = True,
                     max_new_tokens: int = MAX_NEW_TOKENS, template: str | None = None) -> dict[str, Any]:
    """Every per-example measure of `examples` (see the module docstring), as lists aligned with them."""
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be at least 1, got {max_new_tokens} (open-unlearning generates 200)")
    was = model.training
    model.eval()
    rows: dict[str, list] = {"id": [], "avg_nll": [], "total_nll": [], "tokens": []}
    members: list[MemberTokens] = []
    for start in range(0, len(examples), EVAL_BATCH):
        chunk = examples[start:start + EVAL_BATCH]
        tokens = encode_pairs(tokenizer, [ex.content() for ex in chunk], [ex.id for ex in chunk], max_length, device,
                              template)
        batch = tokens.rows(torch.arange(len(chunk), device=device))
        total, counts = answer_nll(model, batch)
        rows["id"] += [ex.id for ex in chunk]
        rows["total_nll"] += total.cpu().tolist()
        rows["tokens"] += counts.cpu().tolist()
        rows["avg_nll"] += (total / counts.clamp(min=1)).cpu().tolist()
        members += _token_stats(model, batch, tokenizer.eos_token_id)
    logp = [m.logprobs for m in members]
    member_nll = np.array([membership_nll(nll, m, not ex.prompt)
                           for nll, m, ex in zip(rows["avg_nll"], members, examples)], dtype=np.float64)
    texts = [tokenizer.decode(m.ids.tolist(), skip_special_tokens=True) for m in members]
    rows["mia_loss"] = scores.loss_score(member_nll).tolist()
    rows["mia_zlib"] = scores.zlib_score(member_nll, texts).tolist()
    rows["mia_min_k"] = scores.min_k_score(logp).tolist()
    rows["mia_min_k_plus_plus"] = scores.min_k_plus_plus_score(logp, [m.mu for m in members],
                                                               [m.sigma for m in members]).tolist()
    if examples and all(ex.paraphrased is not None and ex.perturbed for ex in examples):
        k = min(len(ex.perturbed) for ex in examples)
        para = _avg_nll(model, tokenizer, [(ex.prompt, ex.paraphrased) for ex in examples], max_length, device,
                        template)
        pert = _avg_nll(model, tokenizer, [(ex.prompt, p) for ex in examples for p in ex.perturbed[:k]], max_length,
                        device, template).reshape(len(examples), k)
        rows["paraphrased_avg_nll"] = para.tolist()
        rows["perturbed_avg_nll"] = pert.tolist()
        rows["truth_ratio"] = scores.truth_ratio(para, pert).tolist()
    if generate and examples and examples[0].prompt:
        answers = _generate(model, tokenizer, examples, max_new_tokens, device, template)
        rows["generated"] = answers
        rows["rouge_l"] = [scores.rouge_l_recall(a, ex.answer) for a, ex in zip(answers, examples)]
    model.train(was)
    return rows


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(per_split: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The split-level figures of one model: every registered causal-LM evidence entry, in order (evidence.py),
    NaN-free (a figure its data cannot give is left out)."""
    out: dict[str, float] = {}
    for entry in (e for e in EVIDENCE.values() if e.task == CAUSAL_LM):
        out.update(entry.compute(TextEvidenceInputs(per_split, dict(out))))
    return {k: v for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def compare(model: dict[str, Any], retrain: dict[str, Any]) -> dict[str, float]:
    """The figures measured against Retrain: forget quality and PrivLeak (scores.priv_leak: negative = the forget
    set still recognised, under-unlearning; positive = over-unlearning; left out where Retrain's AUC is 1)."""
    out: dict[str, float] = {}
    mine, theirs = model["per_split"].get("forget", {}), retrain["per_split"].get("forget", {})
    if "truth_ratio" in mine and "truth_ratio" in theirs:
        out["forget_quality"] = scores.forget_quality(mine["truth_ratio"], theirs["truth_ratio"])
    mine_auc, retrain_auc = model["summary"].get("mia_min_k_auc"), retrain["summary"].get("mia_min_k_auc")
    if mine_auc is not None and retrain_auc is not None and retrain_auc < 1.0:  # at 1, MUSE's PrivLeak is undefined
        out["privleak"] = scores.priv_leak(mine_auc, retrain_auc)
    return out


def measure(model: nn.Module, tokenizer, splits: dict[str, list[Example]], max_length: int,
            device: torch.device, max_new_tokens: int = MAX_NEW_TOKENS, template: str | None = None,
            formats: dict[str, str | None] | None = None, attack: RelearnAttack | None = None) -> dict[str, Any]:
    """Per-example measures of every split and their summary (max_new_tokens: the greedy answers' length cap;
    template: the prompt format, data/text/tokens.py).

    Robustness (robustness.py), where asked: the forget set in each of `formats` ("forget@<name>") and with its
    paraphrased questions ("forget@question"), and the half of it a relearning attack did not train on, measured
    on the attacked copy ("relearned")."""
    def of(examples: list[Example], net: nn.Module = model, form: str | None = template) -> dict[str, Any]:
        return measure_examples(net, tokenizer, examples, max_length, device, max_new_tokens=max_new_tokens,
                                template=form)

    per_split = {name: of(examples) for name, examples in splits.items() if examples}
    forget = splits.get("forget") or []
    if forget and formats is not None:
        for name, form in formats.items():
            per_split[f"forget@{name}"] = of(forget, form=form)
        asked = robustness.paraphrased(forget)
        if asked:
            per_split["forget@question"] = of(asked)
    if forget and attack is not None:
        student, held = robustness.relearned(model, tokenizer, forget, attack, max_length, device, template)
        if student is not None:
            per_split["relearned"] = of(held, student)
    return {"per_split": per_split, "summary": summarise(per_split)}


def retain_sample(retain: list[Example], count: int, seed: int) -> list[Example]:
    """The retain examples a model is measured on: all of them, or a seeded draw of `count` in their order
    (generation is the costly part of measuring); the same draw in a run, its records and `verify`."""
    if len(retain) <= count:
        return list(retain)
    chosen = np.sort(np.random.default_rng(seed).choice(len(retain), count, replace=False))
    return [retain[i] for i in chosen]
