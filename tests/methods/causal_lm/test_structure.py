"""Plans inferred from structure, and structured pruning that from_pretrained reloads, on four families."""
from __future__ import annotations

import pytest
import torch

from prunelora.errors import UserError
from prunelora.methods.causal_lm.prune import check_reload, prune
from prunelora.models.causal_lm.structure import infer_plan

from ...causal_lm_fixtures import FAMILIES, tiny

EXPECTED = {  # family -> (attention projections, MLP expand, MLP contract, config field of the MLP width)
    "llama": (["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj"], "down_proj", "intermediate_size"),
    "qwen2": (["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj"], "down_proj", "intermediate_size"),
    "phi": (["q_proj", "k_proj", "v_proj", "dense"], ["fc1"], "fc2", "intermediate_size"),
    "gpt2": (["c_attn", "c_proj"], ["c_fc"], "c_proj", "n_inner"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_inferred_plan_names_each_familys_parts(family):
    plan = infer_plan(tiny(family))
    attention, expand, contract, field = EXPECTED[family]
    assert len(plan.blocks) == 2 and plan.hidden == 32 and plan.inner_field == field
    for block in plan.blocks:
        assert [p.rsplit(".", 1)[-1] for p in block.attention_projections] == attention
        assert [p.rsplit(".", 1)[-1] for p in block.expand] == expand
        assert block.contract.rsplit(".", 1)[-1] == contract and block.inner == 64
    assert set(plan.suffixes("all")) == set(attention) | set(expand) | {contract}
    assert plan.fused_qkv == (family == "gpt2")


def test_lora_targets_refuse_a_projection_the_model_lacks():
    with pytest.raises(UserError, match="no projection of this model"):
        infer_plan(tiny("llama")).suffixes("q_proj,c_attn")


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_mlp_reloads_with_from_pretrained(family, tmp_path):
    import transformers as T

    model = tiny(family)
    before = sum(p.numel() for p in model.parameters())
    kept = prune(model, "mlp", 0.25)
    assert kept["mlp_neurons_kept"] == 48 and all(b.inner == 48 for b in infer_plan(model).blocks)
    assert sum(p.numel() for p in model.parameters()) < before
    model.save_pretrained(tmp_path)
    back = T.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.arange(10)[None]
    torch.testing.assert_close(back(ids).logits, model.eval()(ids).logits)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_heads_go_by_key_value_group_and_reload(family):
    model = tiny(family)
    kept = prune(model, "heads", 0.5)  # 4 query heads in 2 groups of 2: one group stays
    assert kept == {"heads_kept": 2, "kv_heads_kept": 1}
    assert model.config.num_attention_heads == 2 and model.config.head_dim == 8
    check_reload(model, "heads")  # raises if from_pretrained rebuilt other shapes


def test_magnitude_pruning_keeps_the_largest_neurons():
    model = tiny("llama")
    plan = infer_plan(model)
    block = plan.blocks[0]
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in [*block.expand]:
            modules[name].weight[:8] *= 100.0  # the first 8 neurons are by far the largest
    prune(model, "mlp", 0.875)  # keep 8 of 64
    assert torch.all(modules[block.expand[0]].weight.abs().sum(1) > 10)


def test_fused_attention_heads_are_refused():
    with pytest.raises(UserError, match="fused"):
        prune(tiny("gpt2"), "heads", 0.5)


def test_saliency_pruning_removes_what_the_forget_loss_needs_least():
    model = tiny("llama")
    ids = torch.arange(12)[None]
    calls = []

    def forget_loss(net):
        calls.append(1)
        return net(input_ids=ids, labels=ids).loss

    by_saliency = prune(tiny("llama"), "mlp", 0.5, forget_loss)
    assert calls and by_saliency["mlp_neurons_kept"] == 32
    magnitude, saliency = tiny("llama"), tiny("llama")
    prune(magnitude, "mlp", 0.5)
    prune(saliency, "mlp", 0.5, forget_loss)
    name = infer_plan(model).blocks[0].contract
    kept_m = dict(magnitude.named_modules())[name].weight
    kept_s = dict(saliency.named_modules())[name].weight
    assert kept_m.shape == kept_s.shape and not torch.equal(kept_m, kept_s)  # another criterion, other neurons
    assert all(p.grad is None for p in saliency.parameters())  # the gradients it read are cleared
