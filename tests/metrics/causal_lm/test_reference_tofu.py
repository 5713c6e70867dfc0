"""TOFU's model utility (metrics/causal_lm/tofu.py) against its reference, computed by hand: locuslab/tofu commit
bdc209e aggregate_eval_stat.py get_model_utility and evaluate_util.py / config/eval_everything.yaml (which answer
is compared with which); open-unlearning d3d7cf9 configs/eval/tofu_metrics/model_utility.yaml,
src/evals/metrics/memorization.py (probability_w_options, truth_ratio true_better), utility.py (hm_aggregate)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prunelora.config.causal_lm import LMDataConfig
from prunelora.data.text.examples import Example, from_rows
from prunelora.data.text.tofu import REAL_AUTHORS, WORLD_FACTS
from prunelora.data.text.tokens import IGNORE, encode
from prunelora.metrics.causal_lm import tofu
from prunelora.metrics.causal_lm.measure import measure_examples, summarise
from prunelora.metrics.entry import TextEvidenceInputs
from prunelora.metrics.registry import EVIDENCE

from ...causal_lm_fixtures import tiny

CPU = torch.device("cpu")
ln = math.log


def test_retain_probability_is_the_mean_of_exp_minus_mean_nll():
    # P = 0.5 and 0.25: TOFU averages the per-example probabilities, not the NLLs (exp(-mean NLL) = 0.354)
    assert tofu.mean_probability([ln(2), ln(4)]) == pytest.approx(0.375)


def test_option_probability_is_normalised_over_the_answer_options():
    # example 1: P(true) 0.3, P(perturbed) 0.1 each -> 0.3 / 0.6 = 0.5; example 2: 0.6 / (0.6 + 0.4) = 0.6
    true = [-ln(0.3), -ln(0.6)]
    wrong = [[-ln(0.1), -ln(0.1), -ln(0.1)], [-ln(0.1), -ln(0.1), -ln(0.2)]]
    assert tofu.option_probability(true, wrong) == pytest.approx(0.55)
    assert tofu.mean_probability(true) == pytest.approx(0.45)  # what it would be unnormalised: not TOFU's


def test_truth_ratio_score_takes_the_geometric_mean_of_the_perturbed():
    # example 1: P(paraphrased) 1/2, P(perturbed) 1/4 and 1/16: mean NLL ln 8, R = (1/8) / (1/2) = 1/4 -> 0.75
    # (averaging the probabilities instead, as TOFU's older utils.py did, gives R = 0.3125 -> 0.6875);
    # example 2: R = 0.5 / 0.1 = 5 > 1 -> max(0, 1 - 5) = 0
    para = [ln(2), ln(10)]
    pert = [[ln(4), ln(16)], [ln(2), ln(2)]]
    assert tofu.truth_ratio_score(para, pert) == pytest.approx((0.75 + 0.0) / 2)


def test_rouge_l_is_the_mean_recall():
    assert tofu.mean_rouge_l([1.0, 0.75, 0.0, 0.25]) == pytest.approx(0.5)


def _rows(avg: list[float], rouge: list[float], para: list[float], pert: list[list[float]]) -> dict:
    return {"id": [str(i) for i in range(len(avg))], "avg_nll": avg, "rouge_l": rouge,
            "paraphrased_avg_nll": para, "perturbed_avg_nll": pert}


RETAIN = _rows([ln(2), ln(4)], [1.0, 0.5], [ln(2), ln(10)], [[ln(4), ln(16)], [ln(2), ln(2)]])
# the answer is the "paraphrased" one (eval_everything.yaml base_answer_key: answer)
AUTHORS = _rows([-ln(0.3), -ln(0.6)], [0.5, 0.5], [-ln(0.3), -ln(0.6)],
                [[-ln(0.1), -ln(0.1), -ln(0.1)], [-ln(0.1), -ln(0.1), -ln(0.2)]])
FACTS = _rows([ln(2)], [0.8], [ln(2)], [[ln(4), ln(4), ln(4)]])


def _by_hand() -> dict[str, dict[str, float]]:
    """The nine figures of RETAIN, AUTHORS and FACTS from the formulas, number by number."""
    authors_tr = (max(0.0, 1 - 0.1 / 0.3) + max(0.0, 1 - (0.1 * 0.1 * 0.2) ** (1 / 3) / 0.6)) / 2
    return {"retain": {"prob": 0.375, "rouge_l": 0.75, "truth_ratio": 0.375},
            REAL_AUTHORS: {"prob": 0.55, "rouge_l": 0.5, "truth_ratio": authors_tr},
            # P(true) 1/2, P(perturbed) 1/4 x 3 -> 0.5 / 1.25 = 0.4; R = 1/2 -> 0.5
            WORLD_FACTS: {"prob": 0.4, "rouge_l": 0.8, "truth_ratio": 0.5}}


def test_each_set_s_three_figures():
    want = _by_hand()
    for name, rows in (("retain", RETAIN), (REAL_AUTHORS, AUTHORS), (WORLD_FACTS, FACTS)):
        assert tofu.set_figures(name, rows) == pytest.approx(want[name])


def test_model_utility_is_the_harmonic_mean_of_nine():
    values = [v for figures in _by_hand().values() for v in figures.values()]
    assert len(values) == 9
    assert tofu.model_utility(_by_hand()) == pytest.approx(9 / sum(1 / v for v in values))
    even = {s: {"prob": p, "rouge_l": p, "truth_ratio": p} for s, p in (("retain", 0.5), (REAL_AUTHORS, 0.25),
                                                                         (WORLD_FACTS, 1.0))}
    assert tofu.model_utility(even) == pytest.approx(3 / 7)  # 9 / (3 x 2 + 3 x 4 + 3 x 1); retain alone: 0.5
    even[WORLD_FACTS]["rouge_l"] = 0.0
    assert tofu.model_utility(even) == 0.0  # one collapsed figure: scipy's hmean is 0 too


def test_a_set_without_options_is_a_clear_error():
    with pytest.raises(ValueError, match="lack paraphrased_avg_nll, perturbed_avg_nll"):
        tofu.set_figures(REAL_AUTHORS, {"id": ["0"], "avg_nll": [1.0], "rouge_l": [0.5]})


def test_the_evidence_entry_writes_model_utility_only_with_both_utility_sets():
    per_split = {"retain": RETAIN, REAL_AUTHORS: AUTHORS, WORLD_FACTS: FACTS}
    out = tofu.tofu_utility(TextEvidenceInputs(per_split, {}))
    assert out["model_utility"] == pytest.approx(tofu.model_utility(_by_hand()))
    assert out[f"{REAL_AUTHORS}_prob_normalised"] == pytest.approx(0.55)
    assert out[f"{WORLD_FACTS}_prob_normalised"] == pytest.approx(0.4)
    assert tofu.tofu_utility(TextEvidenceInputs({"retain": RETAIN, REAL_AUTHORS: AUTHORS}, {})) == {}


def test_registered_after_the_retain_side_so_tofu_s_figure_is_the_row_s():
    names = list(EVIDENCE)
    assert names.index("tofu_model_utility") > names.index("retain_utility")
    summary = summarise({"retain": RETAIN, REAL_AUTHORS: AUTHORS, WORLD_FACTS: FACTS})
    assert summary["model_utility"] == pytest.approx(tofu.model_utility(_by_hand()))
    assert "retain_utility" in summary  # the retain side's own figure, under its own name
    assert "model_utility" not in summarise({"retain": RETAIN})  # TOFU's name only for TOFU's figure


def _mean_nll(model, tokenizer, prompt: str, answer: str) -> float:
    """The mean NLL of an answer's tokens (end-of-sequence included), from the logits."""
    batch = encode(tokenizer, [Example("x", prompt, answer)], 64, CPU).rows(torch.arange(1))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0, :-1].double()
    labels = batch["labels"][0, 1:]
    keep = labels != IGNORE
    return float(-torch.log_softmax(logits, -1)[keep].gather(-1, labels[keep][:, None]).mean())


def test_measure_examples_gives_what_a_utility_set_needs(people, tokenizer):
    """measure.py's per-example lists are enough for real authors and world facts: the answer doubles as the
    paraphrased one, and the normalised probability computed from the model's NLLs by hand is the entry's."""
    _, examples = from_rows(people[0], LMDataConfig())
    sets = [Example(f"real_authors-{i:04d}", ex.prompt, ex.answer, ex.answer, ex.perturbed)
            for i, ex in enumerate(examples[:3])]
    model = tiny("llama", tokenizer)
    rows = measure_examples(model, tokenizer, sets, 64, CPU, max_new_tokens=4)
    assert rows["paraphrased_avg_nll"] == pytest.approx(rows["avg_nll"], abs=1e-5)
    by_hand = []
    for ex in sets:
        true = math.exp(-_mean_nll(model, tokenizer, ex.prompt, ex.answer))
        wrong = sum(math.exp(-_mean_nll(model, tokenizer, ex.prompt, p)) for p in ex.perturbed)
        by_hand.append(true / (true + wrong))
    assert tofu.set_figures(REAL_AUTHORS, rows)["prob"] == pytest.approx(np.mean(by_hand), abs=1e-5)
