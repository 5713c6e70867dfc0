"""The causal-LM objectives against open-unlearning (commit d3d7cf9, src/trainer/unlearn/*.py, src/trainer/utils.py,
configs/trainer/*.yaml) and WMDP's rmu/unlearn.py, on hand-computed values from tiny models: token-weighted NLL
terms, per-example NPO/SimNPO/RMU terms, their exactness under torchrun's sharding, and RMU's mask, layer, trained
weights and frozen model."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from prunelora import distributed
from prunelora.data.text.tokens import IGNORE, TokenSet
from prunelora.errors import UserError
from prunelora.models.causal_lm.loading import tiny_model
from prunelora.models.causal_lm.structure import infer_plan
from prunelora.objectives.base import Feed
from prunelora.objectives.causal_lm.base import global_mean
from prunelora.objectives.causal_lm.grad_diff import GradDiff, GradDiffArgs
from prunelora.objectives.causal_lm.gradient_ascent import GradientAscent
from prunelora.objectives.causal_lm.npo import NPO, NPOArgs
from prunelora.objectives.causal_lm.retain import RetainFinetune
from prunelora.objectives.causal_lm.rmu import RMU, RMUArgs, default_layer
from prunelora.objectives.causal_lm.simnpo import SimNPO, SimNPOArgs

from ...causal_lm_fixtures import FAMILIES, tiny


def _batch(ids: list[list[int]], answer_from: list[int]) -> dict[str, torch.Tensor]:
    """Rows of equal width whose answers start at different positions (so their token counts differ)."""
    input_ids = torch.tensor(ids)
    labels = input_ids.clone()
    for row, start in enumerate(answer_from):
        labels[row, :start] = IGNORE
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
            "index": torch.arange(len(ids))}


FORGET = _batch([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], [1, 4])  # 5 and 2 answer tokens
RETAIN = _batch([[13, 14, 15, 16, 17], [18, 19, 20, 21, 22], [23, 24, 25, 26, 27]], [4, 1, 2])  # 1, 4, 3


@torch.no_grad()
def _token_nlls(model, batch) -> list[torch.Tensor]:
    """Per row: -log p(token_t | tokens_<t) of each answer token, from the logits (the hand formula)."""
    logp = torch.log_softmax(model(input_ids=batch["input_ids"]).logits.double(), -1)
    out = []
    for row in range(len(batch["input_ids"])):
        positions = [t for t in range(1, batch["labels"].shape[1]) if batch["labels"][row, t] != IGNORE]
        out.append(torch.stack([-logp[row, t - 1, batch["input_ids"][row, t]] for t in positions]))
    return out


def _token_mean(model, batch) -> float:
    """open-unlearning's model(**inputs).loss: every answer token of the batch, averaged (token-weighted)."""
    nlls = _token_nlls(model, batch)
    return float(torch.cat(nlls).sum() / sum(len(n) for n in nlls))


def _per_example_avg(model, batch) -> torch.Tensor:
    return torch.stack([n.mean() for n in _token_nlls(model, batch)])


def _bound(cls, args=None, original=None):
    objective = cls(args, original=original)
    objective.model = tiny("llama")
    return objective


def test_the_batches_differ_between_token_and_example_weighting():
    model = tiny("llama")
    per_example = float(_per_example_avg(model, FORGET).mean())
    assert abs(_token_mean(model, FORGET) - per_example) > 1e-3  # else the tests below could not fail


def test_retain_finetune_and_ga_are_token_weighted():
    finetune, ga = _bound(RetainFinetune), _bound(GradientAscent)
    assert finetune.loss(RETAIN, None).item() == pytest.approx(_token_mean(finetune.model, RETAIN), rel=1e-5)
    assert ga.loss(FORGET, None).item() == pytest.approx(-_token_mean(ga.model, FORGET), rel=1e-5)


def test_graddiff_is_token_weighted_on_both_sets():
    gd = _bound(GradDiff, GradDiffArgs(gamma=0.5, alpha=2.0))
    expected = -0.5 * _token_mean(gd.model, FORGET) + 2.0 * _token_mean(gd.model, RETAIN)
    assert gd.loss(FORGET, RETAIN).item() == pytest.approx(expected, rel=1e-5)


def test_graddiff_npo_simnpo_defaults_are_open_unlearnings():
    # configs/trainer/GradDiff.yaml, NPO.yaml, SimNPO.yaml; RMU.yaml (steering 2, alpha 1, gamma 1)
    assert (GradDiffArgs().gamma, GradDiffArgs().alpha) == (1.0, 1.0)
    assert (NPOArgs().beta, NPOArgs().alpha, NPOArgs().gamma) == (0.1, 1.0, 1.0)
    s = SimNPOArgs()
    assert (s.beta, s.delta, s.gamma, s.alpha) == (4.5, 0.0, 0.125, 1.0)
    r = RMUArgs()
    assert (r.steering_coeff, r.alpha, r.gamma, r.params) == (2.0, 1.0, 1.0, "wmdp")


def test_npo_forget_term_per_example_and_retain_term_token_weighted():
    model = tiny("llama")
    data = TokenSet(["a", "b"], FORGET["input_ids"], FORGET["attention_mask"], FORGET["labels"])
    npo = NPO(NPOArgs(beta=0.5, alpha=3.0, gamma=2.0), original=tiny("llama", seed=1))
    npo.start(model, Feed({"forget": data}, 2, False, torch.Generator()))
    # compute_dpo_loss(lose only): -2/beta * mean_i logsigmoid(-beta * (logp_i - ref_logp_i)), logp_i the summed
    # token log-probability of answer i; ref from the original model
    logp = torch.stack([-n.sum() for n in _token_nlls(model, FORGET)])
    ref = torch.stack([-n.sum() for n in _token_nlls(npo.original, FORGET)])
    forget = -(2 / 0.5) * F.logsigmoid(-0.5 * (logp - ref)).mean()
    expected = 2.0 * float(forget) + 3.0 * _token_mean(model, RETAIN)
    assert npo.loss(FORGET, RETAIN).item() == pytest.approx(expected, rel=1e-5)


def test_simnpo_forget_term_per_example_and_retain_term_token_weighted():
    simnpo = _bound(SimNPO, SimNPOArgs(beta=2.0, delta=0.5, gamma=0.25, alpha=3.0))
    # simnpo.py: -logsigmoid(beta * (sum_nll_i / |y_i| - delta)).mean() * 2 / beta
    avg = _per_example_avg(simnpo.model, FORGET)
    forget = -F.logsigmoid(2.0 * (avg - 0.5)).mean() * 2 / 2.0
    expected = 0.25 * float(forget) + 3.0 * _token_mean(simnpo.model, RETAIN)
    assert simnpo.loss(FORGET, RETAIN).item() == pytest.approx(expected, rel=1e-5)


# --- torchrun: fit weights rank r's loss by w_r = s_r * W / S, then averages the ranks' gradients (divides by W) ---


def _fit_combines(monkeypatch, shards: list[tuple[float, int, int]]) -> float:
    """sum_r w_r * global_mean(total_r, count_r, s_r) / W with the collectives faked for ranks holding `shards`
    (total_r, count_r, anchor rows s_r): what the averaged gradient of fit's step is the gradient of."""
    world = len(shards)
    anchor = sum(s for _, _, s in shards)
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    monkeypatch.setattr(distributed, "total", lambda value: float(sum(c for _, c, _ in shards)))  # the counts
    combined = 0.0
    for total, count, rows in shards:
        weight = rows * world / anchor  # distributed.shard_weight(rows)
        monkeypatch.setattr(distributed, "shard_weight", lambda samples, w=weight: w)
        combined += weight * float(global_mean(torch.tensor(total, dtype=torch.float64), count, rows))
    return combined / world


def test_a_token_mean_is_the_global_batchs_under_torchrun(monkeypatch):
    # 2 ranks, uneven shards: 3 and 1 anchor rows holding 7 and 2 answer tokens summing to NLL 5.0 and 4.0:
    # the global token mean is 9.0 / 9 (a mean of the ranks' means would give (5/7 + 4/2) / 2)
    assert _fit_combines(monkeypatch, [(5.0, 7, 3), (4.0, 2, 1)]) == pytest.approx(9.0 / 9)
    # the retain batch's rows split unlike the anchor's: still sum / count
    assert _fit_combines(monkeypatch, [(1.0, 10, 1), (3.0, 2, 2)]) == pytest.approx(4.0 / 12)


def test_a_batch_smaller_than_the_ranks_is_counted_once(monkeypatch):
    # every rank holds the whole batch (token_batches does not shard it): w_r = 1, counts all-reduce to W x count
    assert _fit_combines(monkeypatch, [(6.0, 4, 1), (6.0, 4, 1)]) == pytest.approx(6.0 / 4)


def test_global_mean_in_one_process_is_the_plain_mean():
    assert float(global_mean(torch.tensor(6.0), torch.tensor(4), 2)) == pytest.approx(1.5)


# --- RMU ---------------------------------------------------------------------------------------------------------


def _deep(family: str, layers: int, tokenizer=None):
    return tiny_model(family, 50 if tokenizer is None else len(tokenizer), 0, tokenizer, hidden=16, layers=layers,
                      heads=2, intermediate=32, max_positions=64)


@pytest.mark.parametrize("depth, layer", [(32, 7), (16, 4), (24, 5), (8, 2), (2, 0)])
def test_rmu_default_layer_is_7_of_32_scaled_to_the_depth(depth, layer):
    # round(7 * depth / 32), halves up: 7 of 32, 3.5 -> 4 of 16, 5.25 -> 5 of 24, 1.75 -> 2 of 8, 0.44 -> 0 of 2
    assert default_layer(depth) == layer
    if depth in (32, 8):
        assert RMU().layer(_deep("llama", depth)) == layer


def test_rmu_trains_wmdps_down_projections_by_default():
    model = _deep("llama", 8)  # layer 2: blocks 0, 1, 2 (layer_ids layer-2..layer), mlp.down_proj.weight
    RMU().prepare(model)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)}


@pytest.mark.parametrize("family", FAMILIES)
def test_rmu_params_choice_in_every_family(family):
    model = _deep(family, 8)
    RMU().prepare(model)
    plan = infer_plan(model)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {plan.blocks[i].contract + ".weight" for i in (0, 1, 2)}
    RMU(RMUArgs(params="all")).prepare(model)  # open-unlearning's RMU.yaml: trainable_params_regex .*
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(UserError, match="params"):
        RMU(RMUArgs(params="mlp")).prepare(model)


def _hidden(model, block: str, batch) -> torch.Tensor:
    seen = []
    handle = model.get_submodule(block).register_forward_hook(
        lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    handle.remove()
    return seen[0].double()


def test_rmu_loss_counts_the_answer_tokens_only_and_the_frozen_model_runs_in_eval_mode():
    model, original = tiny("llama"), tiny("llama", seed=1)
    original.train()
    data = TokenSet(["a", "b"], FORGET["input_ids"], FORGET["attention_mask"], FORGET["labels"])
    rmu = RMU(RMUArgs(layer=1, steering_coeff=3.0, alpha=2.0, gamma=0.5), original=original)
    rmu.start(model, Feed({"forget": data}, 2, False, torch.Generator().manual_seed(0)))
    assert not original.training  # WMDP's frozen_model.eval(); open-unlearning's ref_model.eval()
    block = infer_plan(model).blocks[1].name

    def distance(h: torch.Tensor, target: torch.Tensor, batch) -> torch.Tensor:
        # compute_activation_loss: per example sum over answer tokens of mean_d (h - t)^2, over their count; mean
        mask = (batch["labels"] != IGNORE).double()
        per_token = ((h - target) ** 2).mean(-1)
        return ((per_token * mask).sum(1) / mask.sum(1)).mean()

    control = rmu.control.double()
    assert control.norm().item() == pytest.approx(3.0)
    forget = distance(_hidden(model, block, FORGET), control.expand(2, 6, -1), FORGET)
    retain = distance(_hidden(model, block, RETAIN), _hidden(original, block, RETAIN), RETAIN)
    assert rmu.loss(FORGET, RETAIN).item() == pytest.approx(float(0.5 * forget + 2.0 * retain), rel=1e-5)
    rmu.finish()
    assert original.training  # its mode given back


def test_rmu_needs_the_original():
    data = TokenSet(["a", "b"], FORGET["input_ids"], FORGET["attention_mask"], FORGET["labels"])
    with pytest.raises(ValueError, match="before unlearning"):
        RMU().start(tiny("llama"), Feed({"forget": data}, 2, False, torch.Generator()))


def test_npo_and_rmu_leave_the_original_untouched():
    model = tiny("llama")
    original = copy.deepcopy(model)
    before = {n: p.clone() for n, p in original.named_parameters()}
    data = TokenSet(["a", "b"], FORGET["input_ids"], FORGET["attention_mask"], FORGET["labels"])
    rmu = RMU(RMUArgs(layer=0), original=original)
    rmu.start(model, Feed({"forget": data}, 2, False, torch.Generator()))
    rmu.loss(FORGET, RETAIN).backward()
    rmu.finish()
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in original.named_parameters())
    assert math.isfinite(sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None))
