"""prunelora.unlearn, plan and evaluate take a causal LM and its tokenizer as they take a classifier: the same
Hugging Face class out, the input untouched, the command's measures and its seeded retain draw."""
from __future__ import annotations

import pytest
import torch

import prunelora
from prunelora.errors import UserError

from .causal_lm_fixtures import tiny


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_unlearn_returns_the_inputs_class_and_leaves_it_untouched(family, people, tokenizer):
    train, holdout = people
    model = tiny(family, tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget = [r["id"] for r in train if r["person"] == train[0]["person"]]
    result = prunelora.unlearn(model, train, forget, tokenizer=tokenizer, method="ga@prune+lora", holdout=holdout,
                               epochs=1, force=True, **{"unlearn.prune_amount": 0.5})  # random: knows nothing
    assert isinstance(result, prunelora.LMResult) and result.method == "ga@prune+lora"
    assert type(result.model) is type(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.adapter is not None and result.cost["trainable_params"] < sum(p.numel() for p in model.parameters())
    assert {"forget_prob", "retain_prob", "holdout_prob", "mia_min_k_auc", "retain_utility"} <= set(result.measures)
    assert result.verdict.startswith("inconclusive: too few samples")  # 2 forget examples
    assert len(result.per_example["forget"]["id"]) == len(forget)


def test_the_forget_set_given_as_examples_and_a_grid_point_as_surgery_and_objective(people, tokenizer):
    train, _ = people
    person = train[0]["person"]
    forget = [r for r in train if r["person"] == person]
    keep = [r for r in train if r["person"] != person]
    result = prunelora.unlearn(tiny("llama", tokenizer), keep, forget, tokenizer=tokenizer, surgery="lora",
                               objective="npo", epochs=1, force=True)
    assert result.method == "npo@lora" and len(result.per_example["forget"]["id"]) == len(forget)


def test_the_retain_examples_measured_are_the_commands_seeded_draw(people, tokenizer):
    """Not the first N: the same seeded draw as `unlearn --task causal-lm` (data.eval_retain)."""
    from prunelora.data.text.examples import from_rows
    from prunelora.metrics.causal_lm.measure import retain_sample

    train, _ = people
    forget = [train[0]["id"]]
    result = prunelora.unlearn(tiny("llama", tokenizer), train, forget, tokenizer=tokenizer, method="ga", epochs=1,
                               force=True, **{"data.eval_retain": 5})
    measured = result.per_example["retain"]["id"]
    config = prunelora.api_causal_lm.settings_config({})
    kept = [ex for ex in from_rows(train, config.data)[1] if ex.id not in forget]
    assert measured == [ex.id for ex in retain_sample(kept, 5, 0)] and measured != [ex.id for ex in kept[:5]]


def test_plan_and_evaluate_take_a_causal_lm(people, tokenizer):
    train, holdout = people
    model = tiny("llama", tokenizer)
    text = prunelora.plan(model)
    assert "decoder blocks" in text and "prune+lora" in text
    figures = prunelora.evaluate(model, {"forget": train[:4], "retain": train[4:], "holdout": holdout[:4]},
                                 tokenizer=tokenizer)
    assert {"forget_prob", "retain_prob", "holdout_prob", "mia_min_k_auc"} <= set(figures)


def test_unknown_ids_retrain_and_a_missing_tokenizer_are_refused(people, tokenizer):
    model = tiny("llama", tokenizer)
    with pytest.raises(UserError, match="match no example"):
        prunelora.unlearn(model, people[0], ["nobody"], tokenizer=tokenizer)
    with pytest.raises(UserError, match="Retrain trains from scratch"):
        prunelora.unlearn(model, people[0], [people[0][0]["id"]], tokenizer=tokenizer, method="retrain")
    with pytest.raises(UserError, match="needs its tokenizer"):
        prunelora.unlearn(model, people[0], [people[0][0]["id"]])
    with pytest.raises(UserError, match="does not know the forget set"):  # a random model knows nothing
        prunelora.unlearn(model, people[0], [people[0][0]["id"]], tokenizer=tokenizer, holdout=people[1])


def test_prompt_template_from_python_reaches_the_measures_and_the_memorisation_check(people, tokenizer):
    """prompt_template= is the command's --prompt-template: the answers are scored after that prompt, the
    memorisation check names it when the original does not know the forget set in it, and a template without
    one {question} is refused."""
    import re

    train, _ = people
    model = tiny("llama", tokenizer)
    forget = [r for r in train if r["person"] == train[0]["person"]]
    template = "Answer : {question} Question :"
    default = prunelora.evaluate(model, {"forget": forget}, tokenizer=tokenizer)
    framed = prunelora.evaluate(model, {"forget": forget}, tokenizer=tokenizer, prompt_template=template)
    assert default["forget_prob"] != framed["forget_prob"]  # scored after another prompt
    with pytest.raises(UserError, match=re.escape(repr(template))):  # a random model knows nothing, in any format
        prunelora.unlearn(model, train, [r["id"] for r in forget], tokenizer=tokenizer, method="ga", epochs=1,
                          prompt_template=template)
    with pytest.raises(UserError, match="once where the question goes"):
        prunelora.evaluate(model, {"forget": forget}, tokenizer=tokenizer, prompt_template="no question here")
