"""`prunelora.search` from Python: a model and its data in memory, the answer back, the input untouched."""
from __future__ import annotations

import copy

import pytest
import torch

import prunelora
from prunelora.errors import UserError
from prunelora.models import build_model
from prunelora.train import OptimSettings, fit


@pytest.fixture(scope="module")
def trained(digits_splits):
    torch.manual_seed(0)
    c, size, _ = digits_splits.image_shape
    model = build_model("resnet18", digits_splits.num_classes, c, size, digits_splits.mean, digits_splits.std,
                        {"width": 4})
    fit(model, digits_splits.train, OptimSettings(optimizer="sgd", lr=0.05, batch_size=32), 3, seed=0,
        progress=False)
    return model.eval()


@pytest.mark.slow
def test_search_returns_the_answer_and_keeps_the_input(digits_splits, trained):
    before = copy.deepcopy(trained.state_dict())
    s = digits_splits
    result = prunelora.search(trained, s.retain_train, s.forget_train, test=s.test_retain.join(
        [s.test_retain, s.test_forget]), methods=["finetune", "prunelora"], trials=2, pretrain_epochs=3, epochs=2,
        batch_size=32)
    assert 1 <= len(result.trials) <= 2
    assert {t.setting["method"] for t in result.trials} <= {"finetune", "prunelora"}
    assert result.selection_ids and result.verdict_ids and not set(result.selection_ids) & set(result.verdict_ids)
    assert result.spent_samples == sum(t.cost for t in result.trials)
    assert result.budget_samples == 3 * len(s.retain_train)  # Retrain's cost: its recipe's passes over the retain set
    assert result.spent_samples <= result.budget_samples
    if result.model is None:
        assert result.answer.startswith("None of") and not result.passed
    else:
        assert type(result.model) is type(trained) and result.method in ("finetune", "prunelora")
        assert result.verdict and result.figures
        assert result.passed == result.answer.startswith(("Ship", f"{result.method} passes"))
    for key, value in trained.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_search_refuses_bad_options_in_one_line(digits_splits, trained):
    s = digits_splits
    with pytest.raises(UserError, match="unknown option 'nonsense'"):
        prunelora.search(trained, s.retain_train, s.forget_train, test=s.test_retain, nonsense=1)
    with pytest.raises(UserError, match="--budget soon"):
        prunelora.search(trained, s.retain_train, s.forget_train, test=s.test_retain, budget="soon")
