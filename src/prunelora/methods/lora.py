"""LoRA adapters through HF PEFT: a LoraConfig plus get_peft_model, the convention users know."""
from __future__ import annotations

from torch import nn

from ..models import LayerPlan
from .dropout_conv import conv_with_dropout_delta


def folded_conv_class():
    """A PEFT LoRA Conv2d whose forward runs one conv with W + s·BA, or two where dropout is on.

    PEFT's conv LoRA adds a k x k conv to r channels and a 1 x 1 conv back for every adapted layer,
    whose activations cost more than the pruned conv itself (docs/design.md, trap 12). Convolution is
    linear in its weight, so conv(x, W) + s·conv(conv(x, A), B) = conv(x, W + s·BA) exactly. With
    dropout on the adapter's input (the paper's 0.1) the update sees dropout(x), not x: the layer
    then computes conv(x, W) + conv(dropout(x), s·BA), one extra conv instead of PEFT's two, in one
    autograd node that neither stores dropout(x) nor its mask and draws the mask from random bits
    (methods/dropout_conv.py: PEFT's value and gradient for the same mask, its distribution over
    masks). In eval mode dropout is the identity and the one-conv form is used. Parameters, state
    dict and saved adapters are PEFT's own; a LoRA variant (DoRA, ...) falls back to PEFT's forward.
    """
    import torch.nn.functional as F
    from peft.tuners.lora.layer import Conv2d

    class FoldedLoraConv2d(Conv2d):
        def _foldable(self) -> list[str]:
            base = self.get_base_layer()
            active = [a for a in self.active_adapters if a in self.lora_A]
            if base.padding_mode != "zeros" or isinstance(base.padding, str) or \
                    any(a in self.lora_variant for a in active):
                return []
            return active

        def forward(self, x, *args, **kwargs):
            active = self._foldable()
            if self.disable_adapters or self.merged or args or kwargs or not active:
                return super().forward(x, *args, **kwargs)
            base = self.get_base_layer()
            weight, dropped = base.weight, []
            for adapter in active:
                dropout = self.lora_dropout[adapter]
                if isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0:
                    dropped.append((dropout.p, self.get_delta_weight(adapter)))
                else:
                    weight = weight + self.get_delta_weight(adapter)
            if not dropped:
                return F.conv2d(x, weight, base.bias, base.stride, base.padding, base.dilation, base.groups)
            out = None
            for p, delta in dropped:  # the base conv goes with the first; further adapters add their own term
                first = out is None
                term = conv_with_dropout_delta(x, weight if first else None, base.bias if first else None, delta, p,
                                               base.stride, base.padding, base.dilation, base.groups)
                out = term if first else out + term
            return out

    return FoldedLoraConv2d


def lora_config(plan: LayerPlan, r: int | None, alpha: int | None, dropout: float | None):
    from peft import LoraConfig

    rank = r if r is not None else plan.lora_r
    dropout = dropout if dropout is not None else plan.lora_dropout
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        lora_dropout=dropout,
        target_modules=plan.lora_layers,  # a string is a full-match regex in PEFT
        modules_to_save=list(plan.train_modules) or None,
        bias="none",
    )
    config._register_custom_module({nn.Conv2d: folded_conv_class()})
    return config


def attach_lora(model: nn.Module, plan: LayerPlan, r: int | None = None, alpha: int | None = None,
                dropout: float | None = None) -> nn.Module:
    """Wrap the model with PEFT LoRA: only adapters (and the plan's train_modules) require grad."""
    from peft import get_peft_model
    from peft.utils import ModulesToSaveWrapper

    peft_model = get_peft_model(model, lora_config(plan, r, alpha, dropout))
    # PEFT picks modules_to_save by name suffix: a head named "fc" would also catch an "se.fc". Only the
    # plan's own modules train; any other copy is frozen (it is saved unchanged).
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, ModulesToSaveWrapper) and name not in plan.train_modules:
            for param in module.parameters():
                param.requires_grad_(False)
    return peft_model


def merged_copy(peft_model: nn.Module) -> nn.Module:
    """The deliverable model: a deep copy with the adapters merged into the weights."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()


def unloaded_copy(peft_model: nn.Module) -> nn.Module:
    """The base the adapters apply to: a deep copy with the adapters taken out, not merged.

    It holds everything the method changed outside the LoRA matrices (pruning, batch-norm
    statistics), so adapter + this base reproduce the merged model.
    """
    import copy

    return copy.deepcopy(peft_model).unload()
