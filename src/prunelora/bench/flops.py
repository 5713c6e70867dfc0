"""FLOP counting: torch's FlopCounterMode, with the formulas it lacks (the CPU flash attention kernel)."""
from __future__ import annotations

import torch
import torch.utils.flop_counter as fc
from torch.utils.flop_counter import FlopCounterMode


def _flop_mapping() -> dict:
    """Formulas FlopCounterMode lacks: the CPU flash attention kernel that SDPA dispatches to."""
    aten = torch.ops.aten
    mapping: dict = {}

    def forward(q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)

    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return mapping


def flop_counter() -> FlopCounterMode:
    """A counter that also counts the CPU attention kernel."""
    return FlopCounterMode(display=False, custom_mapping=_flop_mapping())
