"""PEFT's conv LoRA with input dropout, conv(x, W) + s·B(A(dropout(x))), in one autograd node that keeps no mask.

The paper's LoRA dropout (0.1) acts on the adapter's input only. Written with nn.Dropout, every
adapted conv keeps dropout(x) (a float copy of its input) and a mask alive until backward, and
draws its mask with torch's per-element Bernoulli sampler, which on a CPU costs more than the
pruned conv itself (26 % of a PruneLoRA epoch on the width-8 ResNet, measured with the profiler).
Here the mask comes from 16 random bits per element (one 64-bit draw gives four), seeded by one
draw from torch's generator, so runs stay reproducible under torch.manual_seed; backward
regenerates it from that seed instead of keeping it.

Two exact forms of the same layer, the same value and gradient for the same mask (PEFT's, draw by draw):

* LowRankConv, the low-rank form: conv(x, W) + conv(conv(dropout(x), A), s·B), PEFT's own k x k conv to
  r channels and 1 x 1 conv back, in one node. Besides the base conv its cost is two convs to and from r
  channels, and an elementwise mask over the input. It keeps x (which the layer before keeps anyway),
  the weights and the r-channel intermediate A(dropout(x)).
* DropoutDeltaConv, the composed form: conv(x, W) + conv(dropout(x), s·BA), one extra full-size conv;
  it keeps x and the weights. Cheaper only where r is at least about the layer's own channel count.

`low_rank_pays` picks per layer by multiply-adds (methods/lora.py). Both act on the input, as PEFT does:
their output distribution is PEFT's. The mask over the input costs more than the low-rank convs themselves
where the layer is a 1 x 1 (r multiply-adds per input element against the mask's draw, compare and two
masked copies): 24 % of a ResNet-50 PruneLoRA epoch (remove mode, profiled). RankDropoutConv is the
alternative the layer runs with dropout_on="rank": the dropout on the r channels after lora_A, a mask r / in
the size; same expectation, another spread, so not PEFT's training distribution (eval mode is the same).

The drop probability is rounded to a multiple of 1/65536 (0.1 becomes 0.100006) and kept
samples are scaled by 1 / (1 - that), so the expectation is x exactly, as with nn.Dropout.

A frozen base with zero output rows (a layer pruned in mask mode: half its rows) is computed on its live rows
alone (live_rows, `rows` of each node): their conv is added into their channels, and the input gradient comes
from their gradient rows alone. A zero row contributes nothing to either, so this is exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import distributed

_LEVELS = 1 << 16  # the drop probability's resolution: 16 random bits per element
# Without dropout the composed update W + s·BA costs one conv's weight gradient; the low-rank form instead
# runs its two small convs three times (forward, input and weight gradients). Measured on 2 CPU cores
# (ResNet-18 layers, widths 4 to 64, batch 128), the low-rank form won where its multiply-adds were at most
# 0.14 of the layer's and lost from 0.28 up: the threshold sits between.
NO_DROPOUT_LOW_RANK_SHARE = 0.15


def _lanes(like: torch.Tensor, seed: int, shard: tuple[int, int] | None) -> torch.Tensor:
    """16 seeded random bits per element of a tensor like `like` (int16, its shape and device); shard: see
    drop_mask."""
    rows, start = shard if shard is not None else (like.shape[0], 0)
    per_row = like[0].numel() if like.dim() and like.shape[0] else 0
    generator = torch.Generator(device=like.device)
    generator.manual_seed(seed)
    words = (rows * per_row + 3) // 4  # four 16-bit lanes per 64-bit draw
    bits = torch.empty(words, dtype=torch.int64, device=like.device).random_(-2**63, 2**63 - 1, generator=generator)
    return bits.view(torch.int16)[start * per_row:(start * per_row + like.numel())].view(like.shape)


def drop_mask(like: torch.Tensor, p: float, seed: int,
              shard: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """The seeded mask of dropped elements for a tensor like `like` (bool, its shape and device) and the scale
    of the kept ones.

    shard (global rows, first row): `like` holds those rows of a larger batch (a torchrun rank's shard): the
    mask is the global batch's, drawn from the same seed, cut to these rows: the single process's mask.
    """
    dropped = round(p * _LEVELS)
    return _lanes(like, seed, shard) < dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped)


def keep_mask(like: torch.Tensor, p: float, seed: int,
              shard: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """The kept elements of drop_mask (its complement, drawn as one comparison), and their scale (what nn.Dropout
    multiplies by). The nodes multiply by it: a product is half a masked fill's time on a CPU."""
    dropped = round(p * _LEVELS)
    return _lanes(like, seed, shard) >= dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped)


def draw_seed() -> int:
    """A seed for one mask, drawn from torch's default generator (reproducible under torch.manual_seed)."""
    return int(torch.randint(0, 2**62, (1,)).item())


def low_rank_share(in_channels: int, out_channels: int, kernel: tuple[int, ...], rank: int, groups: int) -> float:
    """Multiply-adds of the adapter's two convs (k x k to `rank` channels, 1 x 1 back) per output position, as a
    share of the layer's own conv's."""
    taps = 1
    for k in kernel:
        taps *= k
    full = out_channels * (in_channels // groups) * taps
    return rank * (in_channels * taps + out_channels // groups) / full


def low_rank_pays(in_channels: int, out_channels: int, kernel: tuple[int, ...], rank: int, groups: int,
                  p: float) -> bool:
    """Whether the low-rank form costs less than the composed one in training.

    With dropout the composed form adds a full-size conv (forward, input and weight gradients: three
    times the layer's multiply-adds) where the low-rank one adds its two small convs three times: the
    low-rank form pays whenever they are smaller than the layer. Without dropout the composed form is
    W + s·BA in one conv (its weight gradient is the only extra), so the low-rank form must be much
    smaller (NO_DROPOUT_LOW_RANK_SHARE).
    """
    share = low_rank_share(in_channels, out_channels, kernel, rank, groups)
    return share <= (1.0 if p > 0 else NO_DROPOUT_LOW_RANK_SHARE)


def _masked_input(x: torch.Tensor, p: float, seed: int, shard) -> tuple[torch.Tensor | None, float]:
    """The keep mask of x (None without dropout) and the kept elements' scale."""
    if p <= 0:
        return None, 1.0
    return keep_mask(x, p, seed, shard)


def _live(tensor: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    """The rows `rows` of a weight or bias (gathered when needed, never kept: no second copy of a frozen base)."""
    return tensor if tensor is None or rows is None else tensor.index_select(0, rows)


def _add_base_conv(out: torch.Tensor, x: torch.Tensor, weight, bias, rows, stride, padding, dilation,
                   groups: int) -> torch.Tensor:
    """out + conv(x, weight, bias); rows given: the weight's other output rows (and bias) are zero (a frozen
    pruned base), so only these rows' conv is computed and added into their channels."""
    if weight is None:
        return out
    base = F.conv2d(x, _live(weight, rows), _live(bias, rows), stride, padding, dilation, groups)
    return out.add_(base) if rows is None else out.index_add_(1, rows, base)


def _base_conv_backward(grad, x, weight, has_bias: bool, needs: tuple[bool, bool, bool], stride, padding, dilation,
                        groups: int, rows=None) -> tuple:
    """(grad_x, grad_weight, grad_bias) of the frozen or trained base conv(x, weight, bias); Nones where no
    weight (the adapter's term alone) or nothing is needed. rows: the weight's only nonzero output rows (a frozen
    base: only grad_x is asked), whose gradient alone reaches x."""
    need_x, need_w, need_bias = needs
    if weight is None or not (need_x or need_w or (need_bias and has_bias)):
        return None, None, None
    if rows is not None:
        grad, weight = grad.index_select(1, rows), weight.index_select(0, rows)
    return torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if has_bias else None, stride, padding, dilation, False,
        [0] * len(stride), groups, [need_x, need_w, need_bias and has_bias])


class LowRankConv(torch.autograd.Function):
    """conv(x, weight, bias) + conv(conv(dropout_p(x), a), scaling·b): PEFT's LoRA conv (lora_A: k x k to r
    channels with the layer's stride, padding and dilation; lora_B: 1 x 1 back, the layer's groups), its
    dropout on the input, the mask regenerated in backward. weight None: the adapter's term alone."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling: float, p: float, seed: int, stride, padding, dilation, groups,
                rows=None):
        shard = distributed.current_shard()
        keep, keep_scale = _masked_input(x, p, seed, shard)
        b_scaled = b * (scaling * keep_scale)  # the dropout's 1 / (1 - p) and the LoRA scaling on the small weight
        hidden = F.conv2d(x if keep is None else x * keep, a, None, stride, padding, dilation, 1)
        out = _add_base_conv(F.conv2d(hidden, b_scaled, None, 1, 0, 1, groups), x, weight, bias, rows, stride,
                             padding, dilation, groups)
        ctx.save_for_backward(x, weight, a, b_scaled, hidden, rows)
        ctx.settings = (scaling * keep_scale, p, seed, shard, stride, padding, dilation, groups, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, a, b_scaled, hidden, rows = ctx.saved_tensors
        factor, p, seed, shard, stride, padding, dilation, groups, has_bias = ctx.settings
        need_x, need_w, need_bias, need_a, need_b = ctx.needs_input_grad[:5]
        grad = grad.contiguous()
        conv_backward = torch.ops.aten.convolution_backward
        zeros, ones = [0] * len(stride), [1] * len(stride)
        grad_a = grad_b = None
        grad_x, grad_w, grad_bias = _base_conv_backward(grad, x, weight, has_bias, (need_x, need_w, need_bias),
                                                        stride, padding, dilation, groups, rows)
        if need_x or need_a or need_b:
            grad_hidden, grad_b, _ = conv_backward(grad, hidden, b_scaled, None, ones, zeros, ones, False, zeros,
                                                   groups, [need_x or need_a, need_b, False])
            grad_b = grad_b * factor if need_b else None
        if need_x or need_a:
            keep, _ = _masked_input(x, p, seed, shard)
            dropped = x if keep is None or not need_a else x * keep  # grad_input needs only its shape
            grad_dx, grad_a, _ = conv_backward(grad_hidden, dropped, a, None, stride, padding, dilation, False, zeros,
                                               1, [need_x, need_a, False])
            if need_x:
                if keep is not None:
                    grad_dx.mul_(keep)
                grad_x = grad_dx if grad_x is None else grad_x.add_(grad_dx)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None, None, None, None, None, None, None, None


class RankDropoutConv(torch.autograd.Function):
    """conv(x, weight, bias) + conv(dropout_p(conv(x, a)), scaling·b): the dropout on the adapter's r channels
    instead of its input (LoRA's "rank dropout"), the mask regenerated in backward. Its mask has r channels at the
    output's size, so the dropout costs a fraction of the low-rank convs; the expectation is PEFT's, the spread
    is not (whole rank components drop, not input elements). Kept: x, the weights and dropout(A(x))."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling: float, p: float, seed: int, stride, padding, dilation, groups,
                rows=None):
        shard = distributed.current_shard()
        hidden = F.conv2d(x, a, None, stride, padding, dilation, 1)
        keep, keep_scale = _masked_input(hidden, p, seed, shard)
        if keep is not None:
            hidden.mul_(keep)
        b_scaled = b * (scaling * keep_scale)
        out = _add_base_conv(F.conv2d(hidden, b_scaled, None, 1, 0, 1, groups), x, weight, bias, rows, stride,
                             padding, dilation, groups)
        ctx.save_for_backward(x, weight, a, b_scaled, hidden, rows)
        ctx.settings = (scaling * keep_scale, p, seed, shard, stride, padding, dilation, groups, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, a, b_scaled, dropped, rows = ctx.saved_tensors
        factor, p, seed, shard, stride, padding, dilation, groups, has_bias = ctx.settings
        need_x, need_w, need_bias, need_a, need_b = ctx.needs_input_grad[:5]
        grad = grad.contiguous()
        conv_backward = torch.ops.aten.convolution_backward
        zeros, ones = [0] * len(stride), [1] * len(stride)
        grad_a = grad_b = None
        grad_x, grad_w, grad_bias = _base_conv_backward(grad, x, weight, has_bias, (need_x, need_w, need_bias),
                                                        stride, padding, dilation, groups, rows)
        if need_x or need_a or need_b:
            grad_hidden, grad_b, _ = conv_backward(grad, dropped, b_scaled, None, ones, zeros, ones, False, zeros,
                                                   groups, [need_x or need_a, need_b, False])
            grad_b = grad_b * factor if need_b else None
        if need_x or need_a:
            keep, _ = _masked_input(dropped, p, seed, shard)
            if keep is not None:
                grad_hidden.mul_(keep)
            grad_dx, grad_a, _ = conv_backward(grad_hidden, x, a, None, stride, padding, dilation, False, zeros, 1,
                                               [need_x, need_a, False])
            if need_x:
                grad_x = grad_dx if grad_x is None else grad_x.add_(grad_dx)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None, None, None, None, None, None, None, None


class DropoutDeltaConv(torch.autograd.Function):
    """conv(x, weight, bias) + conv(dropout_p(x), delta): the LoRA conv of PEFT with input dropout,
    as two convs, the mask regenerated in backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, delta, p: float, seed: int, stride, padding, dilation, groups, rows=None):
        # conv(x * keep * s, D) = conv(x with dropped elements zeroed, s * D): the scale goes on the small weight
        shard = distributed.current_shard()
        keep, scale = keep_mask(x, p, seed, shard)
        out = F.conv2d(x * keep, delta * scale, None, stride, padding, dilation, groups)
        # weight None: the dropout term alone (a second adapter on the same layer)
        out = _add_base_conv(out, x, weight, bias, rows, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, delta, rows)
        ctx.settings = (p, seed, shard, stride, padding, dilation, groups, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, delta, rows = ctx.saved_tensors
        p, seed, shard, stride, padding, dilation, groups, has_bias = ctx.settings
        need_x, need_w, need_b, need_d = ctx.needs_input_grad[:4]
        grad = grad.contiguous()
        conv_backward = torch.ops.aten.convolution_backward
        common = (stride, padding, dilation, False, [0] * len(stride), groups)
        grad_d = None
        grad_x, grad_w, grad_b = _base_conv_backward(grad, x, weight, has_bias, (need_x, need_w, need_b), stride,
                                                     padding, dilation, groups, rows)
        if need_x or need_d:
            keep, scale = keep_mask(x, p, seed, shard)
            zeroed = x * keep if need_d else x  # grad_input needs only the input's shape
            grad_dx, grad_d, _ = conv_backward(grad, zeroed, delta * scale, None, *common, [need_x, need_d, False])
            grad_d = grad_d * scale if need_d else None
            if need_x:
                grad_dx.mul_(keep)
                grad_x = grad_dx if grad_x is None else grad_x.add_(grad_dx)
        return grad_x, grad_w, grad_b, grad_d, None, None, None, None, None, None, None


def conv_with_dropout_delta(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                            delta: torch.Tensor, p: float, stride, padding, dilation, groups: int,
                            rows: torch.Tensor | None = None) -> torch.Tensor:
    """conv(x, weight, bias) + conv(dropout_p(x), delta) (weight None: the second term alone), train-mode
    dropout with a fresh mask. rows: the only output rows of `weight` and `bias` that are not zero (live_rows)."""
    return DropoutDeltaConv.apply(x, weight, bias, delta, p, draw_seed(), tuple(stride), tuple(padding),
                                  tuple(dilation), groups, rows)


def conv_with_low_rank(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, a: torch.Tensor,
                       b: torch.Tensor, scaling: float, p: float, stride, padding, dilation,
                       groups: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """conv(x, weight, bias) + scaling·B(A(dropout_p(x))) (weight None: the adapter's term alone), a fresh mask
    where p > 0. rows: the only output rows of `weight` and `bias` that are not zero (live_rows)."""
    return LowRankConv.apply(x, weight, bias, a, b, float(scaling), float(p), draw_seed() if p > 0 else 0,
                             tuple(stride), tuple(padding), tuple(dilation), groups, rows)


def conv_with_rank_dropout(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, a: torch.Tensor,
                           b: torch.Tensor, scaling: float, p: float, stride, padding, dilation,
                           groups: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """conv(x, weight, bias) + scaling·B(dropout_p(A(x))) (weight None: the adapter's term alone), a fresh mask.
    rows: the only output rows of `weight` and `bias` that are not zero (live_rows)."""
    return RankDropoutConv.apply(x, weight, bias, a, b, float(scaling), float(p), draw_seed(), tuple(stride),
                                 tuple(padding), tuple(dilation), groups, rows)


# A frozen base is computed on its nonzero output rows only where at least this share of its rows is zero (a
# masked pruned layer: half): below it, gathering the rows and adding them back costs more than it saves.
LIVE_ROWS_SKIP = 0.25


def live_rows(weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1) -> torch.Tensor | None:
    """The output rows of a conv whose weight row or bias is not zero, where enough are zero to skip the rest
    (LIVE_ROWS_SKIP): a zero row's output is exactly zero. None otherwise, where every row is zero, or for a
    grouped conv (its rows map to groups of inputs)."""
    if groups != 1 or weight.shape[0] < 2:
        return None
    live = weight.detach().flatten(1).ne(0).any(1)
    if bias is not None:
        live |= bias.detach().ne(0)
    rows = torch.nonzero(live).flatten()  # the one read back from the device (a GPU waits for it once a layer)
    if rows.numel() == 0 or live.numel() - rows.numel() < LIVE_ROWS_SKIP * live.numel():
        return None
    return rows
