"""The causal-LM task's evidence entries: each a function of the per-example measures, with the specs it writes.

Registered in the one evidence registry (metrics/registry.py) when this module is imported (measure.py imports
it); they run in registration order over one model's measures (measure.py's per-split lists):
the answers' probability and loss, ROUGE-L, TOFU's truth-ratio scores, the model utility built from the retain
side's, and the membership attacks (forget as members against the holdout). Adding a figure is one entry
here (or in a file of its own) and one `register` line.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...registry import CAUSAL_LM
from ..entry import Evidence, TextEvidenceInputs
from ..registry import register
from . import scores
from .specs import SPECS

_BY_KEY = {s.key: s for s in SPECS}


def _specs(*keys: str) -> tuple:
    return tuple(_BY_KEY[k] for k in keys)


def _splits(inputs: TextEvidenceInputs):
    """The measured splits (forget, retain, holdout) that hold examples; the robustness splits are read apart."""
    return [(name, inputs.per_split[name]) for name in PER_SPLIT
            if name in inputs.per_split and inputs.per_split[name].get("id")]


def _prob(rows) -> float:
    return float(np.mean(scores.answer_probability(np.array(rows["avg_nll"]))))


def answers(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """P(answer) (TOFU: exp of minus the mean answer-token NLL, averaged over examples) and the mean NLL."""
    out = {}
    for split, rows in _splits(inputs):
        out[f"{split}_prob"] = _prob(rows)
        out[f"{split}_loss"] = float(np.mean(rows["avg_nll"]))
    return out


def rouge(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """ROUGE-L recall of the greedy answers, averaged over examples (where answers were generated)."""
    return {f"{split}_rouge_l": float(np.mean(rows["rouge_l"])) for split, rows in _splits(inputs) if "rouge_l" in rows}


def truth_ratio(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """TOFU's truth-ratio scores: the forget side's mean min(R, 1/R), the others' mean max(0, 1 - R)."""
    out = {}
    for split, rows in _splits(inputs):
        if "truth_ratio" in rows:
            ratios = np.array(rows["truth_ratio"])
            out[f"{split}_truth_ratio"] = (scores.truth_ratio_forget_stat(ratios) if split == "forget"
                                           else scores.truth_ratio_retain_stat(ratios))
    return out


def utility(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """The harmonic mean of the retain side's probability, ROUGE-L and truth-ratio score (those measured): the
    retain utility. TOFU's model utility adds the real-author and world-fact sets (tofu.py), where given."""
    values = {k: inputs.so_far[f"retain_{k}"] for k in ("prob", "rouge_l", "truth_ratio")
              if f"retain_{k}" in inputs.so_far}
    return {"retain_utility": scores.model_utility(values)} if values else {}


def robust(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """The forget set in other prompt formats and asked in other words (each, and the worst case: the highest
    P(answer) and ROUGE-L over every way of asking, its own included), and the relearning attack's other half:
    its P(answer) and ROUGE-L after the attack, and how much the attack raised P(answer)."""
    out: dict[str, Any] = {}
    per_split = inputs.per_split
    probs, rouges = [], []
    own = per_split.get("forget")
    if own and own.get("id"):
        probs.append(_prob(own))
        rouges += [float(np.mean(own["rouge_l"]))] if "rouge_l" in own else []
    for name in FORMATS:
        rows = per_split.get(f"forget@{name}")
        if rows and rows.get("id"):
            out[f"forget_prob_{name}"] = _prob(rows)
            probs.append(out[f"forget_prob_{name}"])
            if "rouge_l" in rows:
                out[f"forget_rouge_l_{name}"] = float(np.mean(rows["rouge_l"]))
                rouges.append(out[f"forget_rouge_l_{name}"])
    if out:
        out["forget_prob_worst"] = max(probs)
        if rouges:
            out["forget_rouge_l_worst"] = max(rouges)
    attacked = per_split.get("relearned")
    if attacked and attacked.get("id"):
        out["relearn_prob"] = _prob(attacked)
        if "rouge_l" in attacked:
            out["relearn_rouge_l"] = float(np.mean(attacked["rouge_l"]))
        if own and own.get("id"):
            position = {ident: i for i, ident in enumerate(own["id"])}
            before = [own["avg_nll"][position[i]] for i in attacked["id"] if i in position]
            if before:
                out["relearn_gain"] = out["relearn_prob"] - float(np.mean(scores.answer_probability(np.array(before))))
    return out


def attacks(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """Each membership attack's AUC, the forget set (members) against the holdout (never trained on)."""
    forget, holdout = inputs.per_split.get("forget"), inputs.per_split.get("holdout")
    if not (forget and holdout and forget.get("id") and holdout.get("id")):
        return {}
    return {f"mia_{a}_auc": scores.attack_auc(forget[f"mia_{a}"], holdout[f"mia_{a}"]) for a in scores.MIA_SCORES}


PER_SPLIT = ("forget", "retain", "holdout")
FORMATS = ("cue", "bare", "chat", "question")  # robustness.py's other formats, and the paraphrased questions
ENTRIES = (
    Evidence("answers", answers, _specs(*(f"{s}_{k}" for s in PER_SPLIT for k in ("prob", "loss"))), task=CAUSAL_LM,
             one_blas_thread=False),
    Evidence("rouge_l", rouge, _specs(*(f"{s}_rouge_l" for s in PER_SPLIT)), task=CAUSAL_LM, one_blas_thread=False),
    Evidence("truth_ratio", truth_ratio, _specs(*(f"{s}_truth_ratio" for s in PER_SPLIT)), task=CAUSAL_LM,
             one_blas_thread=False),
    Evidence("retain_utility", utility, _specs("retain_utility"), task=CAUSAL_LM, one_blas_thread=False),
    Evidence("robustness", robust, _specs(*(f"forget_{k}_{f}" for f in FORMATS for k in ("prob", "rouge_l")),
                                          "forget_prob_worst", "forget_rouge_l_worst", "relearn_prob",
                                          "relearn_rouge_l", "relearn_gain"), task=CAUSAL_LM, one_blas_thread=False),
    Evidence("membership", attacks, _specs("mia_min_k_auc", "mia_min_k_plus_plus_auc", "mia_loss_auc", "mia_zlib_auc"),
             task=CAUSAL_LM),
)

for _entry in ENTRIES:  # the order of a row's keys
    register(_entry)

from . import tofu as _tofu  # noqa: E402,F401 - TOFU's nine-value model utility, registered after these
