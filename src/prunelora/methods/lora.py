"""LoRA adapters through HF PEFT: a LoraConfig plus get_peft_model, the convention users know."""
from __future__ import annotations

from torch import nn

from ..config.schema import LORA_DROPOUT_PLACES
from ..errors import UserError
from ..models import LayerPlan
from .dropout_conv import (
    conv_with_dropout_delta,
    conv_with_low_rank,
    conv_with_rank_dropout,
    live_rows,
    low_rank_pays,
)

# Where the adapters' dropout acts: "input" (PEFT's: before lora_A, on the layer's input) or "rank" (on the r
# channels after lora_A: cheaper, another spread; see methods/dropout_conv.py). What attach_lora uses unless told.
DROPOUT_PLACES = LORA_DROPOUT_PLACES
DROPOUT_ON = "input"


def folded_conv_class(dropout_on: str = "input"):
    """A PEFT LoRA Conv2d whose forward runs one autograd node per adapter, or one conv of W + s·BA.

    PEFT's conv LoRA adds a k x k conv to r channels and a 1 x 1 conv back for every adapted layer,
    each a module of its own whose activations (and, with dropout, dropout(x) and its mask) autograd
    keeps (docs/design.md, trap 12). Convolution is linear in its weight, so the layer is exactly
    conv(x, W) + s·B(A(dropout(x))), whichever way it is computed:

    * eval mode, or no dropout where the adapter is not much smaller than the layer: one conv with
      W + s·BA (low_rank_pays);
    * otherwise one node (methods/dropout_conv.py) per adapter: the low-rank form (base conv plus the
      adapter's two small convs, the dropout mask on the input regenerated in backward), or, where r is
      not smaller than the layer's channels, the composed form conv(x, W) + conv(dropout(x), s·BA).

    Both nodes give PEFT's value and gradient for the same mask, and PEFT's distribution over masks
    (dropout on the adapter's input, not on its r channels). dropout_on="rank" moves the dropout to the r
    channels after lora_A (RankDropoutConv, "rank" below): cheaper, not PEFT's training distribution.
    Parameters, state dict and saved adapters are PEFT's own; a LoRA variant (DoRA, ...), a bias on lora_B,
    a padding mode other than zeros or autocast fall back to PEFT's forward.
    """
    import torch
    import torch.nn.functional as F
    from peft.tuners.lora.layer import Conv2d

    class FoldedLoraConv2d(Conv2d):
        def _foldable(self) -> list[str]:
            base = self.get_base_layer()
            active = [a for a in self.active_adapters if a in self.lora_A]
            if base.padding_mode != "zeros" or isinstance(base.padding, str) or torch.is_autocast_enabled() or \
                    any(a in self.lora_variant or getattr(self, "lora_bias", {}).get(a, False) for a in active):
                return []
            return active

        def _dropout_p(self, adapter: str) -> float:
            """The adapter's dropout probability as it acts now (0 in eval mode)."""
            dropout = self.lora_dropout[adapter]
            return float(dropout.p) if isinstance(dropout, nn.Dropout) and dropout.training else 0.0

        def _form(self, adapter: str, p: float) -> str:
            """How the adapter's term runs: "fold" (inside the conv's weight), "low_rank", "composed" or "rank" (a
            node)."""
            base = self.get_base_layer()
            pays = low_rank_pays(base.in_channels, base.out_channels, tuple(base.kernel_size), self.r[adapter],
                                 base.groups, p)
            if p > 0 and dropout_on == "rank":
                return "rank"
            if p > 0:
                return "low_rank" if pays else "composed"
            return "low_rank" if pays and torch.is_grad_enabled() else "fold"  # forward alone: one conv is least

        def _live_rows(self, base):
            """The frozen base's nonzero output rows where enough are zero to skip the rest (a masked pruned
            layer: dropout_conv.live_rows), else None. Read from the weight at every call (a pass over the weight,
            far less than its conv): never stale, whatever replaced or edited the weight."""
            weight, bias = base.weight, base.bias
            if weight.requires_grad or (bias is not None and bias.requires_grad):
                return None  # a trained base: its gradient needs every row
            return live_rows(weight, bias, base.groups)

        def forward(self, x, *args, **kwargs):
            active = self._foldable()
            if self.disable_adapters or self.merged or args or kwargs or not active:
                return super().forward(x, *args, **kwargs)
            base = self.get_base_layer()
            weight, terms = base.weight, []
            for adapter in active:
                p = self._dropout_p(adapter)
                form = self._form(adapter, p)
                if form == "fold":
                    weight = weight + self.get_delta_weight(adapter)
                else:
                    terms.append((adapter, p, form))
            if not terms:
                return F.conv2d(x, weight, base.bias, base.stride, base.padding, base.dilation, base.groups)
            # no adapter folded into the weight: a frozen masked base runs its live rows alone
            rows = self._live_rows(base) if weight is base.weight else None
            out = None
            for adapter, p, form in terms:  # the base conv goes with the first; further adapters add their own term
                first = out is None
                w, b = (weight, base.bias) if first else (None, None)
                if form in ("low_rank", "rank"):
                    node = conv_with_low_rank if form == "low_rank" else conv_with_rank_dropout
                    term = node(x, w, b, self.lora_A[adapter].weight, self.lora_B[adapter].weight,
                                self.scaling[adapter], p, base.stride, base.padding, base.dilation, base.groups,
                                rows if first else None)
                else:
                    term = conv_with_dropout_delta(x, w, b, self.get_delta_weight(adapter), p, base.stride,
                                                   base.padding, base.dilation, base.groups, rows if first else None)
                out = term if first else out + term
            return out

    return FoldedLoraConv2d


def lora_config(plan: LayerPlan, r: int | None, alpha: int | None, dropout: float | None,
                dropout_on: str | None = None):
    """PEFT's LoraConfig for the plan, its conv layers the folded ones; dropout_on: DROPOUT_PLACES (default
    DROPOUT_ON)."""
    from peft import LoraConfig

    place = dropout_on or DROPOUT_ON
    if place not in DROPOUT_PLACES:
        raise UserError(f"unknown LoRA dropout place '{place}' (choose {' or '.join(DROPOUT_PLACES)})")

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
    config._register_custom_module({nn.Conv2d: folded_conv_class(place)})
    return config


def attach_lora(model: nn.Module, plan: LayerPlan, r: int | None = None, alpha: int | None = None,
                dropout: float | None = None, dropout_on: str | None = None) -> nn.Module:
    """Wrap the model with PEFT LoRA: only adapters (and the plan's train_modules) require grad. dropout_on: where
    the conv adapters' dropout acts (DROPOUT_PLACES; default DROPOUT_ON, PEFT's "input")."""
    from peft import get_peft_model
    from peft.utils import ModulesToSaveWrapper

    peft_model = get_peft_model(model, lora_config(plan, r, alpha, dropout, dropout_on))
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
