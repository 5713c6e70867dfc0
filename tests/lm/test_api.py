"""unlearn_lm: a model and tokenizer in, the same Hugging Face class out, the input untouched."""
from __future__ import annotations

import pytest
import torch

from prunelora.api_causal_lm import unlearn_lm
from prunelora.errors import UserError

from .conftest import tiny


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_unlearn_lm_returns_the_inputs_class_and_leaves_it_untouched(family, people, tokenizer):
    train, holdout = people
    model = tiny(family, tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget = [r["id"] for r in train if r["person"] == train[0]["person"]]
    result = unlearn_lm(model, tokenizer, train, forget, "ga@prune+lora", holdout=holdout,
                        **{"unlearn.epochs": 1, "unlearn.prune_amount": 0.5})
    assert type(result.model) is type(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.adapter is not None and result.cost["trainable_params"] < sum(p.numel() for p in model.parameters())
    assert {"forget_prob", "retain_prob", "holdout_prob", "mia_min_k_auc", "model_utility"} <= set(result.measures)
    assert result.verdict == "inconclusive: too few samples"  # 2 forget examples
    assert len(result.per_example["forget"]["id"]) == len(forget)


def test_unlearn_lm_refuses_unknown_ids_and_retrain(people, tokenizer):
    model = tiny("llama", tokenizer)
    with pytest.raises(UserError, match="match no example"):
        unlearn_lm(model, tokenizer, people[0], ["nobody"])
    with pytest.raises(UserError, match="Retrain trains from scratch"):
        unlearn_lm(model, tokenizer, people[0], [people[0][0]["id"]], "retrain")
