"""Surgeries on causal LMs: what trains, adapters that reload to the same logits, and the checkpointing trap."""
from __future__ import annotations

import pytest
import torch

from prunelora.config.causal_lm import LMUnlearnConfig
from prunelora.methods.causal_lm.surgery import NAMES as SURGERIES
from prunelora.methods.causal_lm.surgery import operate

from ...causal_lm_fixtures import FAMILIES, tiny


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("surgery", SURGERIES)
def test_every_surgery_leaves_the_input_untouched_and_trains_its_share(family, surgery):
    model = tiny(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    operated = operate(model, surgery, LMUnlearnConfig(prune_amount=0.5, lora_r=2))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    total = sum(p.numel() for p in model.parameters())
    assert 0 < operated.trainable() <= total
    if "lora" in surgery:
        assert operated.trainable() < total / 4  # only adapters
        names = [n for n, p in operated.model.named_parameters() if p.requires_grad]
        assert names and all("lora_" in n for n in names)
    ids = torch.arange(6)[None]
    assert torch.isfinite(operated.merged()(ids).logits).all()


@pytest.mark.parametrize("surgery", ["lora", "prune+lora"])
def test_adapter_with_its_base_reloads_to_the_same_logits(surgery, tmp_path):
    import transformers as T
    from peft import PeftModel

    operated = operate(tiny("llama"), surgery, LMUnlearnConfig(prune_amount=0.5, lora_r=2))
    with torch.no_grad():
        for name, p in operated.model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter (B starts at zero)
    ids = torch.arange(7)[None]
    expected = operated.model.eval()(ids).logits
    operated.model.save_pretrained(tmp_path / "adapter")
    import copy
    copy.deepcopy(operated.model).unload().save_pretrained(tmp_path / "base")
    back = PeftModel.from_pretrained(T.AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter")
    torch.testing.assert_close(back.eval()(ids).logits, expected)
    torch.testing.assert_close(operated.merged().eval()(ids).logits, expected, atol=1e-5, rtol=1e-5)


def _step_moves_every_lora_b(model) -> bool:
    model.train()
    ids = torch.randint(0, 50, (2, 8))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    return bool(grads) and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_lora_trains_under_gradient_checkpointing():
    """open-unlearning #178: with checkpointing on and nothing before the blocks requiring grad, reentrant
    checkpointing gives the adapters no gradient. The surgery makes the input embeddings require grad."""
    operated = operate(tiny("llama"), "lora", LMUnlearnConfig(gradient_checkpointing=True, lora_r=2))
    base = operated.model.get_base_model()
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    # the fix: the embeddings' output requires grad (transformers 5's checkpointing layer no longer needs it; 4's
    # reentrant checkpoint does, and pyproject allows both)
    ids = torch.randint(0, 50, (1, 4))
    assert base.get_input_embeddings()(ids).requires_grad
    assert _step_moves_every_lora_b(operated.model)
