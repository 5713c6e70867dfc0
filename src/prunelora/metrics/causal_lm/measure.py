"""The field's LLM measures of one model on forget, retain and holdout examples: per example, then summarised.

Per example (exported, so a reader can recompute every figure): the answer's mean and summed token NLL and
its token count, the paraphrased and perturbed answers' mean NLLs and the truth ratio (TOFU), the greedy
answer and its ROUGE-L recall, and the four membership scores (loss, zlib, Min-K %, Min-K %++). Summaries:
probability, ROUGE-L and loss per split, TOFU's truth-ratio scores and model utility (the harmonic mean of
the retain split's probability, ROUGE-L and truth-ratio score; TOFU also averages real-author and world-fact
sets, which a user's data does not have), and each attack's AUC, forget (members) vs holdout. Against
Retrain (compare): TOFU's forget quality (KS test of the forget truth ratios) and MUSE's PrivLeak (of the
Min-K % attack, MUSE's choice).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.text.examples import Example
from ...data.text.tokens import IGNORE, encode_pairs, prompts
from ...objectives.causal_lm.base import answer_nll
from . import scores

EVAL_BATCH = 32


def _token_stats(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[tuple[np.ndarray, ...]]:
    """Per example: its answer tokens' log-probabilities, and the mean and std of log p over the vocabulary
    at each (Min-K %++)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    logp = F.log_softmax(logits, -1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp * logp).sum(-1) - mu * mu).clamp(min=0).sqrt()
    chosen = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    out = []
    for row in range(len(labels)):
        keep = labels[row] != IGNORE
        out.append((chosen[row][keep].cpu().numpy(), mu[row][keep].cpu().numpy(), sigma[row][keep].cpu().numpy()))
    return out


def _avg_nll(model: nn.Module, tokenizer, pairs: list[tuple[str, str]], max_length: int,
             device: torch.device) -> np.ndarray:
    """Mean answer-token NLL of each (prompt, answer) pair."""
    values = []
    for start in range(0, len(pairs), EVAL_BATCH):
        chunk = pairs[start:start + EVAL_BATCH]
        tokens = encode_pairs(tokenizer, chunk, [str(i) for i in range(len(chunk))], max_length, device)
        total, counts = answer_nll(model, tokens.rows(torch.arange(len(chunk), device=device)))
        values.append((total / counts.clamp(min=1)).cpu().numpy())
    return np.concatenate(values) if values else np.zeros(0)


def _generate(model: nn.Module, tokenizer, examples: list[Example], max_new: int, device: torch.device) -> list[str]:
    """Greedy answers to the examples' prompts."""
    out: list[str] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(examples), EVAL_BATCH):
        chunk = examples[start:start + EVAL_BATCH]
        inputs = prompts(tokenizer, chunk, device)
        generated = model.generate(**inputs, max_new_tokens=max_new, do_sample=False, pad_token_id=pad,
                                   eos_token_id=tokenizer.eos_token_id)
        new = generated[:, inputs["input_ids"].shape[1]:]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return [text.strip() for text in out]


@torch.no_grad()
def measure_examples(model: nn.Module, tokenizer, examples: list[Example], max_length: int,
                     device: torch.device, generate: bool = True) -> dict[str, Any]:
    """Every per-example measure of `examples` (see the module docstring), as lists aligned with them."""
    was = model.training
    model.eval()
    rows: dict[str, list] = {"id": [], "avg_nll": [], "total_nll": [], "tokens": []}
    stats: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(examples), EVAL_BATCH):
        chunk = examples[start:start + EVAL_BATCH]
        tokens = encode_pairs(tokenizer, [ex.content() for ex in chunk], [ex.id for ex in chunk], max_length, device)
        batch = tokens.rows(torch.arange(len(chunk), device=device))
        total, counts = answer_nll(model, batch)
        rows["id"] += [ex.id for ex in chunk]
        rows["total_nll"] += total.cpu().tolist()
        rows["tokens"] += counts.cpu().tolist()
        rows["avg_nll"] += (total / counts.clamp(min=1)).cpu().tolist()
        stats += _token_stats(model, batch)
    logp = [s[0] for s in stats]
    rows["mia_loss"] = scores.loss_score(np.array(rows["avg_nll"])).tolist()
    rows["mia_zlib"] = scores.zlib_score(np.array(rows["avg_nll"]), [ex.answer for ex in examples]).tolist()
    rows["mia_min_k"] = scores.min_k_score(logp).tolist()
    rows["mia_min_k_plus_plus"] = scores.min_k_plus_plus_score(logp, [s[1] for s in stats],
                                                               [s[2] for s in stats]).tolist()
    if examples and all(ex.paraphrased is not None and ex.perturbed for ex in examples):
        k = min(len(ex.perturbed) for ex in examples)
        para = _avg_nll(model, tokenizer, [(ex.prompt, ex.paraphrased) for ex in examples], max_length, device)
        pert = _avg_nll(model, tokenizer, [(ex.prompt, p) for ex in examples for p in ex.perturbed[:k]], max_length,
                        device).reshape(len(examples), k)
        rows["paraphrased_avg_nll"] = para.tolist()
        rows["perturbed_avg_nll"] = pert.tolist()
        rows["truth_ratio"] = scores.truth_ratio(para, pert).tolist()
    if generate and examples and examples[0].prompt:
        longest = max(rows["tokens"])
        answers = _generate(model, tokenizer, examples, longest + 2, device)
        rows["generated"] = answers
        rows["rouge_l"] = [scores.rouge_l_recall(a, ex.answer) for a, ex in zip(answers, examples)]
    model.train(was)
    return rows


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(per_split: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The split-level figures of one model (NaN-free: a figure its data cannot give is left out)."""
    out: dict[str, float] = {}
    for split, rows in per_split.items():
        if not rows["id"]:
            continue
        out[f"{split}_prob"] = _mean(scores.answer_probability(np.array(rows["avg_nll"])).tolist())
        out[f"{split}_loss"] = _mean(rows["avg_nll"])
        if "rouge_l" in rows:
            out[f"{split}_rouge_l"] = _mean(rows["rouge_l"])
        if "truth_ratio" in rows:
            ratios = np.array(rows["truth_ratio"])
            out[f"{split}_truth_ratio"] = (scores.truth_ratio_forget_stat(ratios) if split == "forget"
                                           else scores.truth_ratio_retain_stat(ratios))
    utility = {k: out[f"retain_{k}"] for k in ("prob", "rouge_l", "truth_ratio") if f"retain_{k}" in out}
    if utility:
        out["model_utility"] = scores.model_utility(utility)
    forget, holdout = per_split.get("forget"), per_split.get("holdout")
    if forget and holdout and forget["id"] and holdout["id"]:
        for attack in scores.MIA_SCORES:
            out[f"mia_{attack}_auc"] = scores.attack_auc(forget[f"mia_{attack}"], holdout[f"mia_{attack}"])
    return {k: v for k, v in out.items() if math.isfinite(v)}


def compare(model: dict[str, Any], retrain: dict[str, Any]) -> dict[str, float]:
    """The figures measured against Retrain: forget quality and PrivLeak."""
    out: dict[str, float] = {}
    mine, theirs = model["per_split"].get("forget", {}), retrain["per_split"].get("forget", {})
    if "truth_ratio" in mine and "truth_ratio" in theirs:
        out["forget_quality"] = scores.forget_quality(mine["truth_ratio"], theirs["truth_ratio"])
    if "mia_min_k_auc" in model["summary"] and "mia_min_k_auc" in retrain["summary"]:
        out["privleak"] = scores.priv_leak(model["summary"]["mia_min_k_auc"], retrain["summary"]["mia_min_k_auc"])
    return out


def measure(model: nn.Module, tokenizer, splits: dict[str, list[Example]], max_length: int,
            device: torch.device) -> dict[str, Any]:
    """Per-example measures of every split and their summary."""
    per_split = {name: measure_examples(model, tokenizer, examples, max_length, device)
                 for name, examples in splits.items() if examples}
    return {"per_split": per_split, "summary": summarise(per_split)}
