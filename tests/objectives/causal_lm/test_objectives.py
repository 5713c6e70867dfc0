"""The LLM objectives' losses on hand values, and each one training a tiny model through train.fit."""
from __future__ import annotations

import math

import pytest
import torch

from prunelora.config.causal_lm import LMDataConfig, LMUnlearnConfig
from prunelora.data.text.examples import from_rows
from prunelora.data.text.tokens import IGNORE, encode
from prunelora.methods.causal_lm.surgery import operate
from prunelora.objectives import OBJECTIVES, get_objective
from prunelora.objectives.causal_lm import answer_nll, mean_nll
from prunelora.objectives.causal_lm.grad_diff import GradDiff
from prunelora.objectives.causal_lm.gradient_ascent import GradientAscent
from prunelora.objectives.causal_lm.npo import NPO, npo_loss
from prunelora.objectives.causal_lm.rmu import _masked_mse
from prunelora.objectives.causal_lm.simnpo import simnpo_loss
from prunelora.registry import CAUSAL_LM
from prunelora.train import OptimSettings, fit

from ...causal_lm_fixtures import FAMILIES, tiny


def test_npo_loss_on_hand_values():
    # equal to the reference: -(2/b) log sigmoid(0) = (2/b) log 2
    assert npo_loss(torch.tensor([-3.0]), torch.tensor([-3.0]), 0.1).item() == pytest.approx(20 * math.log(2))
    # far less likely than the reference: the loss vanishes
    assert npo_loss(torch.tensor([-100.0]), torch.tensor([-1.0]), 1.0).item() < 1e-6
    lp, ref, b = torch.tensor([-2.0, -5.0]), torch.tensor([-4.0, -4.0]), 0.5
    expected = -(2 / b) * torch.nn.functional.logsigmoid(-b * (lp - ref)).mean()
    assert npo_loss(lp, ref, b).item() == pytest.approx(expected.item())


def test_simnpo_loss_on_hand_values():
    # avg NLL 1, beta 2, delta 0: -(2/2) log sigmoid(2) = log(1 + e^-2)
    assert simnpo_loss(torch.tensor([1.0]), 2.0, 0.0).item() == pytest.approx(math.log1p(math.exp(-2)))
    assert simnpo_loss(torch.tensor([1.0]), 2.0, 1.0).item() == pytest.approx(math.log(2))


def test_rmu_mse_counts_only_masked_tokens_per_example():
    hidden = torch.tensor([[[1.0, 1.0], [5.0, 5.0]], [[2.0, 0.0], [0.0, 0.0]]])
    target = torch.zeros(2, 2, 2)
    # per example: sum over masked tokens of the width-mean squared error, over their count
    mask = torch.tensor([[True, False], [True, True]])
    assert _masked_mse(hidden, target, mask).tolist() == pytest.approx([1.0, 1.0])
    assert _masked_mse(hidden, target, torch.tensor([[1, 1], [0, 1]])).tolist() == pytest.approx([13.0, 0.0])


def test_answer_nll_is_the_answer_tokens_cross_entropy():
    model = tiny("llama")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 4, 5]])
    total, count = answer_nll(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    logp = torch.log_softmax(model(ids).logits[0], -1)
    assert count.item() == 2
    assert total.item() == pytest.approx(-(logp[2, 4] + logp[3, 5]).item(), rel=1e-5)


@pytest.fixture(scope="module")
def sets(people, tokenizer):
    _, examples = from_rows(people[0], LMDataConfig())
    forget = [ex for ex in examples if ex.id.startswith(("p0000", "p0001"))]
    retain = [ex for ex in examples if ex not in forget]
    device = torch.device("cpu")
    return encode(tokenizer, retain, 64, device), encode(tokenizer, forget, 64, device)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", OBJECTIVES.names(CAUSAL_LM))
def test_each_objective_trains_through_fit(name, family, sets, tokenizer):
    retain, forget = sets
    original = tiny(family, tokenizer)
    operated = operate(original, "none", LMUnlearnConfig())
    cls = get_objective(name, CAUSAL_LM)
    # SimNPO's forget term weighs 0.125 against the retain term's 1: alone, it must push the forget answers away.
    # At beta 4.5 its sigmoid is saturated on a random model (NLL ~5: gradients below Adam's eps), so a soft beta
    objective = cls(cls.Args(alpha=0.0, beta=0.1) if name == "simnpo" else None, original=original)
    objective.prepare(operated.model)
    before = {n: p.clone() for n, p in operated.model.named_parameters()}
    forget_before = mean_nll(operated.model, forget.rows(torch.arange(len(forget)))).item()
    history = fit(operated.model, retain, OptimSettings(optimizer="adamw", lr=1e-2, batch_size=4), 2, seed=0,
                  objective=objective, forget=forget, progress=False)
    assert all(math.isfinite(v) for v in history.epoch_loss)
    moved = [n for n, p in operated.model.named_parameters() if not torch.equal(p, before[n])]
    assert moved
    if name == "rmu":  # only the MLP down projections of the chosen layer and the two below it (WMDP's)
        assert all(".mlp." in n and n.endswith(".weight") for n in moved)
    forget_after = mean_nll(operated.model, forget.rows(torch.arange(len(forget)))).item()
    if name in ("ga", "graddiff", "npo", "simnpo"):
        assert forget_after > forget_before  # pushed away from the forget answers
    if name == "retain":
        assert forget_after != forget_before


def _batch(ids: list[list[int]], answer_from: int) -> dict[str, torch.Tensor]:
    input_ids = torch.tensor(ids)
    labels = input_ids.clone()
    labels[:, :answer_from] = IGNORE
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
            "index": torch.arange(len(ids))}


def test_gradient_ascent_and_difference_on_hand_values():
    from prunelora.objectives.causal_lm.grad_diff import GradDiffArgs

    model = tiny("llama")  # equal answer lengths: token and example means agree (test_reference_objectives: unequal)
    forget, retain = _batch([[1, 2, 3, 4]], 2), _batch([[5, 6, 7, 8], [9, 10, 11, 12]], 1)
    nll_f, nll_r = mean_nll(model, forget), mean_nll(model, retain)
    ga = GradientAscent()
    ga.model = model
    assert ga.loss(forget, None).item() == pytest.approx(-nll_f.item())
    gd = GradDiff(GradDiffArgs(gamma=0.5, alpha=2.0))
    gd.model = model
    assert gd.loss(forget, retain).item() == pytest.approx(-0.5 * nll_f.item() + 2.0 * nll_r.item(), rel=1e-6)


def test_npo_compares_with_the_reference_computed_once():
    from prunelora.data.text.tokens import TokenSet
    from prunelora.objectives.base import Feed
    from prunelora.objectives.causal_lm.npo import NPOArgs

    model = tiny("llama")
    batch = _batch([[1, 2, 3, 4], [4, 3, 2, 1]], 2)
    data = TokenSet(["a", "b"], batch["input_ids"], batch["attention_mask"], batch["labels"])
    npo = NPO(NPOArgs(beta=0.5, alpha=0.0), original=tiny("llama"))
    npo.start(model, Feed({"forget": data}, 2, False, torch.Generator()))
    total, _ = answer_nll(model, batch)
    expected = npo_loss(-total, npo.reference, 0.5)
    assert npo.loss(batch, None).item() == pytest.approx(expected.item())
    npo_same = NPO(NPOArgs(beta=0.5, alpha=0.0), original=model)  # the model is its own reference: (2/b) log 2
    npo_same.start(model, Feed({"forget": data}, 2, False, torch.Generator()))
    assert npo_same.loss(batch, None).item() == pytest.approx(4 * math.log(2), rel=1e-5)
