"""TOFU's model utility exactly: the harmonic mean of nine figures, three for each of its three utility sets.

For the retain set (retain_perturbed), the real authors and the world facts: the answer's probability, the
ROUGE-L recall of the greedy answer and the truth-ratio score, each averaged over the set's examples, then the
harmonic mean of the nine (scipy.stats.hmean; 0 when any is 0). The reference is TOFU's own aggregation,
locuslab/tofu commit bdc209ea7c6cc2e7079ea1afb6468d3ddcc65f8e:

- aggregate_eval_stat.py get_model_utility (the README's route to "Model Utility"): the probability of a
  retain answer is exp(-mean answer-token NLL), averaged over examples; of a real-author or world-fact answer
  it is normalised over the answer options, P(true) / (P(true) + sum_k P(perturbed_k)), each P the
  exp(-mean token NLL) of that answer, averaged over examples; ROUGE-L is the mean rougeL recall; the
  truth-ratio score is mean(max(0, 1 - R)) with R = exp(paraphrased NLL - mean_k perturbed_k NLL) (the
  perturbed answers' mean NLLs averaged before exponentiating: a ratio of geometric means), and "Model
  Utility" is hmean of every figure but the forget set's.
- evaluate_util.py and config/eval_everything.yaml: what each NLL is (the mean over the answer's tokens) and
  which answer is "paraphrased": paraphrased_answer for the retain set, the answer itself for real authors and
  world facts (base_answer_key).

open-unlearning (commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a) reproduces it: configs/eval/tofu_metrics/
model_utility.yaml (the nine pre_compute entries, hm_aggregate in src/evals/metrics/utility.py),
src/evals/metrics/memorization.py probability_w_options and truth_ratio (aggregator true_better, the
perturbed answers' avg_loss averaged by aggregate_to_1D). Two differences, both below any reported digit:
open-unlearning adds 1e-10 to the two denominators; TOFU's utils.py (an older copy of get_model_utility)
averages the perturbed probabilities, not their NLLs, which aggregate_eval_stat.py and open-unlearning do not.

The per-set functions read numbers a model already gave (measure.py's per-example lists), so each is checked
by hand (tests/metrics/causal_lm/test_reference_tofu.py). The evidence entry writes `model_utility` where a model's measures
hold the real_authors and world_facts sets (data/text/tofu.py: `--dataset tofu:DIR`), with the two normalised
probabilities TOFU reports for them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import hmean

from ...data.text.tofu import REAL_AUTHORS, WORLD_FACTS
from ...registry import CAUSAL_LM
from ..entry import Evidence, TextEvidenceInputs
from ..registry import register  # evidence.py imports this module after registering its own entries
from ..spec import ROW, MetricSpec
from . import scores
from .specs import SPECS

RETAIN = "retain"
UTILITY_SETS = (RETAIN, REAL_AUTHORS, WORLD_FACTS)
LABELS = {REAL_AUTHORS: "real authors", WORLD_FACTS: "world facts"}


def mean_probability(avg_nll: ArrayLike) -> float:
    """TOFU's probability of a retain answer: mean over examples of exp(-mean answer-token NLL)
    (aggregate_eval_stat.py get_model_utility, 'eval_log' branch)."""
    return float(np.mean(scores.answer_probability(_vector(avg_nll, "avg_nll"))))


def option_probability(avg_nll: ArrayLike, perturbed_avg_nll: ArrayLike) -> float:
    """TOFU's probability of a real-author or world-fact answer, normalised over its options: mean over examples
    of P(true) / (P(true) + sum_k P(perturbed_k)), each P = exp(-mean token NLL) of that answer
    (aggregate_eval_stat.py get_model_utility, else branch; open-unlearning probability_w_options)."""
    true = np.exp(-_vector(avg_nll, "avg_nll"))
    wrong = np.exp(-_options(perturbed_avg_nll, true.size)).sum(axis=1)
    return float(np.mean(true / (true + wrong)))


def mean_rouge_l(rouge_l: ArrayLike) -> float:
    """The mean ROUGE-L recall of the greedy answers (aggregate_eval_stat.py: rougeL_recall averaged)."""
    return float(np.mean(_vector(rouge_l, "rouge_l")))


def truth_ratio_score(paraphrased_avg_nll: ArrayLike, perturbed_avg_nll: ArrayLike) -> float:
    """mean(max(0, 1 - R)), R = exp(paraphrased NLL - mean_k perturbed_k NLL): TOFU's truth-ratio score of a
    utility set (aggregate_eval_stat.py: max(0, 1 - 1/curr_stat_1), curr_stat_1 = exp(mean perturbed -
    paraphrased); open-unlearning truth_ratio, aggregator true_better). 1: the true answer is far likelier."""
    para = _vector(paraphrased_avg_nll, "paraphrased_avg_nll")
    return scores.truth_ratio_retain_stat(scores.truth_ratio(para, _options(perturbed_avg_nll, para.size)))


def set_figures(name: str, rows: Mapping[str, list]) -> dict[str, float]:
    """A utility set's three figures from its per-example measures (measure.py): "prob" (normalised over the
    options for real authors and world facts), "rouge_l" and "truth_ratio"."""
    missing = [k for k in ("avg_nll", "rouge_l", "paraphrased_avg_nll", "perturbed_avg_nll") if k not in rows]
    if missing:
        raise ValueError(f"TOFU's model utility: the {name} set's measures lack {', '.join(missing)} (its examples "
                         "need paraphrased and perturbed answers, and generated answers)")
    prob = (mean_probability(rows["avg_nll"]) if name == RETAIN
            else option_probability(rows["avg_nll"], rows["perturbed_avg_nll"]))
    return {"prob": prob, "rouge_l": mean_rouge_l(rows["rouge_l"]),
            "truth_ratio": truth_ratio_score(rows["paraphrased_avg_nll"], rows["perturbed_avg_nll"])}


def model_utility(figures: Mapping[str, Mapping[str, float]]) -> float:
    """TOFU's model utility: the harmonic mean of the nine figures of the retain, real-author and world-fact sets
    (aggregate_eval_stat.py: scipy.stats.hmean of every figure but the forget set's); 0.0 when any is 0."""
    values = [figures[s][k] for s in UTILITY_SETS for k in ("prob", "rouge_l", "truth_ratio")]
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"TOFU's model utility: every figure must be finite and >= 0, got {values}")
    return 0.0 if min(values) == 0 else float(hmean(values))


def tofu_utility(inputs: TextEvidenceInputs) -> dict[str, Any]:
    """TOFU's nine-figure model utility, where the measures hold the retain, real_authors and world_facts sets
    (each with ids), and the two sets' normalised probabilities; nothing otherwise (the retain side's own
    figure is retain_utility)."""
    rows = {s: inputs.per_split.get(s) for s in UTILITY_SETS}
    if not all(r and r.get("id") for r in rows.values()):
        return {}
    figures = {s: set_figures(s, r) for s, r in rows.items()}
    return {"model_utility": model_utility(figures),
            **{f"{s}_prob_normalised": figures[s]["prob"] for s in (REAL_AUTHORS, WORLD_FACTS)}}


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers, got shape {v.shape}")
    return v


def _options(perturbed_avg_nll: ArrayLike, n: int) -> np.ndarray:
    v = np.asarray(perturbed_avg_nll, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != n or v.shape[1] < 1:
        raise ValueError(f"perturbed_avg_nll must have shape [{n}, k] with k >= 1, got {v.shape}")
    return v


def _normalised_spec(name: str) -> MetricSpec:
    return MetricSpec(f"{name}_prob_normalised", f"P(answer | options) {LABELS[name]}", unit="", best=None,
                      section=ROW, digits=3, tasks=(CAUSAL_LM,),
                      description=f"TOFU: P(true) / (P(true) + sum P(perturbed)) on the {LABELS[name]} set")


_MODEL_UTILITY = next(s for s in SPECS if s.key == "model_utility")
ENTRY = register(Evidence("tofu_model_utility", tofu_utility,
                          (_MODEL_UTILITY, _normalised_spec(REAL_AUTHORS), _normalised_spec(WORLD_FACTS)),
                          task=CAUSAL_LM, one_blas_thread=False))
