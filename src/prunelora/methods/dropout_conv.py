"""conv(x, W) + conv(dropout(x), D) in one autograd node whose dropout mask is never stored.

The paper's LoRA dropout (0.1) acts on the adapter's input only. Written with nn.Dropout, every
adapted conv keeps dropout(x) (a float copy of its input) and a mask alive until backward, and
draws its mask with torch's per-element Bernoulli sampler, which on a CPU costs more than the
pruned conv itself (26 % of a PruneLoRA epoch on the width-8 ResNet, measured with the profiler).
Here the mask comes from 16 random bits per element (one 64-bit draw gives four), seeded by one
draw from torch's generator, so runs stay reproducible under torch.manual_seed; backward
regenerates it from that seed instead of keeping it. What the node keeps is x (which the layer
before keeps anyway), W and D.

The drop probability is rounded to a multiple of 1/65536 (0.1 becomes 0.100006) and kept
samples are scaled by 1 / (1 - that), so the expectation is x exactly, as with nn.Dropout.
"""
from __future__ import annotations

import torch

from .. import distributed

_LEVELS = 1 << 16  # the drop probability's resolution: 16 random bits per element


def drop_mask(like: torch.Tensor, p: float, seed: int,
              shard: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """The seeded mask of dropped elements for a tensor like `like` (bool, its shape and device) and the scale
    of the kept ones.

    shard (global rows, first row): `like` holds those rows of a larger batch (a torchrun rank's shard): the
    mask is the global batch's, drawn from the same seed, cut to these rows: the single process's mask.
    """
    dropped = round(p * _LEVELS)
    rows, start = shard if shard is not None else (like.shape[0], 0)
    per_row = like[0].numel() if like.dim() and like.shape[0] else 0
    generator = torch.Generator(device=like.device)
    generator.manual_seed(seed)
    words = (rows * per_row + 3) // 4  # four 16-bit lanes per 64-bit draw
    bits = torch.empty(words, dtype=torch.int64, device=like.device).random_(-2**63, 2**63 - 1, generator=generator)
    lanes = bits.view(torch.int16)[start * per_row:(start * per_row + like.numel())].view(like.shape)
    return lanes < dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped)


def keep_mask(like: torch.Tensor, p: float, seed: int) -> tuple[torch.Tensor, float]:
    """The kept elements of drop_mask, and their scale (what nn.Dropout multiplies by)."""
    drop, scale = drop_mask(like, p, seed)
    return ~drop, scale


def draw_seed() -> int:
    """A seed for one mask, drawn from torch's default generator (reproducible under torch.manual_seed)."""
    return int(torch.randint(0, 2**62, (1,)).item())


class DropoutDeltaConv(torch.autograd.Function):
    """conv(x, weight, bias) + conv(dropout_p(x), delta): the LoRA conv of PEFT with input dropout,
    as two convs, the mask regenerated in backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, delta, p: float, seed: int, stride, padding, dilation, groups):
        # conv(x * keep * s, D) = conv(x with dropped elements zeroed, s * D): the scale goes on the small weight
        shard = distributed.current_shard()
        drop, scale = drop_mask(x, p, seed, shard)
        out = torch.nn.functional.conv2d(x.masked_fill(drop, 0), delta * scale, None, stride, padding, dilation,
                                         groups)
        if weight is not None:  # None: the dropout term alone (a second adapter on the same layer)
            out.add_(torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups))
        ctx.save_for_backward(x, weight, delta)
        ctx.settings = (p, seed, shard, stride, padding, dilation, groups, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, delta = ctx.saved_tensors
        p, seed, shard, stride, padding, dilation, groups, has_bias = ctx.settings
        need_x, need_w, need_b, need_d = ctx.needs_input_grad[:4]
        grad = grad.contiguous()
        conv_backward = torch.ops.aten.convolution_backward
        common = (stride, padding, dilation, False, [0] * len(stride), groups)
        grad_x = grad_w = grad_b = grad_d = None
        if weight is not None and (need_x or need_w or (need_b and has_bias)):
            grad_x, grad_w, grad_b = conv_backward(grad, x, weight, [weight.shape[0]] if has_bias else None, *common,
                                                   [need_x, need_w, need_b and has_bias])
        if need_x or need_d:
            drop, scale = drop_mask(x, p, seed, shard)
            zeroed = x.masked_fill(drop, 0) if need_d else x  # grad_input needs only the input's shape
            grad_dx, grad_d, _ = conv_backward(grad, zeroed, delta * scale, None, *common, [need_x, need_d, False])
            grad_d = grad_d * scale if need_d else None
            if need_x:
                grad_dx.masked_fill_(drop, 0)
                grad_x = grad_dx if grad_x is None else grad_x.add_(grad_dx)
        return grad_x, grad_w, grad_b, grad_d, None, None, None, None, None, None


def conv_with_dropout_delta(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                            delta: torch.Tensor, p: float, stride, padding, dilation, groups: int) -> torch.Tensor:
    """conv(x, weight, bias) + conv(dropout_p(x), delta) (weight None: the second term alone), train-mode
    dropout with a fresh mask."""
    return DropoutDeltaConv.apply(x, weight, bias, delta, p, draw_seed(), tuple(stride), tuple(padding),
                                  tuple(dilation), groups)
