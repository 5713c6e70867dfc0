"""Batch norm synchronised over the ranks of a torchrun run while training: the single process's statistics.

Under torchrun every rank draws the same global batch and keeps its contiguous shard (distributed.py).
A plain batch norm then normalises each shard with the shard's own mean and variance, so the step is
not the single process's step on the global batch (the smoke ResNet ended up to 12.5 points of RA
away from one process). Here, inside `synchronized(model)`, every batch norm of the model in train
mode normalises with the statistics of the global batch, and updates its running statistics with
them, exactly as nn.BatchNorm does on the concatenated batch:

- each rank computes its shard's count, mean and biased variance per channel; one all-reduce (with
  a backward: the gradient of a sum over the ranks is the sum of their gradients) gives every rank
  every rank's row; the global mean and variance are their count-weighted combination (Chan et al.),
  so uneven shards and empty ones (count 0) count exactly as their samples;
- a batch smaller than the ranks is not split: every rank holds all of it (Feed.epoch marks only the
  shards of a split batch, and distributed.current_shard() is None inside the forward of a whole one),
  so each rank normalises it with its own statistics, which are the batch's, as a plain batch norm;
- the gradients are those of the global batch: each rank's loss is weighted by its share and the
  parameters' gradients averaged (train.fit), and through the all-reduce's backward each rank's
  inputs receive the gradient of every rank's loss.
It costs one small all-reduce per batch norm in each forward and each backward, and one wait for
its result (as torch.nn.SyncBatchNorm's).

Why not torch.nn.SyncBatchNorm: its forward refuses CPU tensors (gloo: "SyncBatchNorm expected input
tensor to be on GPU", torch 2.13),
and it is another module type, while the saved models must stay plain BatchNorm2d. So the same
function serves both backends: only the forward of each batch norm instance is replaced, for the
duration of the context; the modules, their types, parameters, buffers and state_dict keys never
change. Outside train mode, outside the context, in a single process, or on rank 0 alone inside
distributed.on_main, a batch norm runs its own forward.
"""
from __future__ import annotations

import contextlib
import types
import weakref
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import distributed

_synced: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # the batch norms a context synchronises now


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with a backward: every rank's input receives the sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D401 - autograd's API
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def _syncing(module: nn.Module) -> bool:
    return module.training and module in _synced and distributed.active() and not distributed._solo


def _forward(self: _BatchNorm, input: torch.Tensor) -> torch.Tensor:
    """The forward a synchronised batch norm runs (bound to the instance; a deep copy binds to the copy)."""
    if _syncing(self):
        return synchronized_batch_norm(self, input)
    plain = self.__dict__.get("_prunelora_plain_forward")
    return plain(input) if plain is not None else type(self).forward(self, input)


def synchronized_batch_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """bn's train-mode forward on this rank's shard with the global batch's statistics (see the module's docstring).

    Every rank must call it, for the same layer, in the same order (the training step does).
    """
    bn._check_input_dim(x)
    if distributed.current_shard() is None:  # this rank holds the whole batch: its statistics are the batch's
        return type(bn).forward(bn, x)
    channels = x.shape[1]
    per_channel = x.numel() // channels if channels else 0
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    dims = [0, *range(2, x.dim())]
    if per_channel > 0:
        var, mean = torch.var_mean(xf, dim=dims, correction=0)
    else:  # an empty shard counts as nothing, but stays in the graph: every rank's backward must all-reduce
        var = mean = xf.sum(dim=dims)
    world, rank = distributed.world_size(), distributed.rank()
    mine = torch.cat([torch.tensor([per_channel], dtype=torch.float64, device=x.device),
                      mean.double(), var.double()])
    rows = _SumOverRanks.apply(torch.stack([mine if r == rank else torch.zeros_like(mine) for r in range(world)]))
    counts = rows[:, 0].detach()  # exact: each row is one rank's, the others add 0
    means, variances = rows[:, 1:1 + channels], rows[:, 1 + channels:]
    n = int(counts.sum())
    if n == 0:  # every shard empty: what the plain batch norm does with an empty batch
        return type(bn).forward(bn, x)
    share = (counts / n).unsqueeze(1)
    mean_d = (share * means).sum(0)
    var_d = (share * (variances + (means - mean_d) ** 2)).sum(0)
    mean_g, var_g = mean_d.to(xf.dtype), var_d.to(xf.dtype)
    if n <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            factor = 0.0 if bn.momentum is None else bn.momentum  # nn.BatchNorm's rule
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
                if bn.momentum is None:  # a cumulative average
                    factor = 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - factor).add_(mean_g.detach().to(bn.running_mean.dtype), alpha=factor)
            unbiased = var_g.detach().double() * (n / (n - 1))
            bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)
    shape = (1, channels) + (1,) * (x.dim() - 2)
    scale = torch.rsqrt(var_g + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    out = (xf - mean_g.view(shape)) * scale.view(shape)
    if bn.bias is not None:
        out = out + bn.bias.view(shape)
    return out.to(x.dtype)


def _ours(module: nn.Module) -> bool:
    forward = module.__dict__.get("forward")
    return isinstance(forward, types.MethodType) and forward.__func__ is _forward


@contextlib.contextmanager
def synchronized(model: nn.Module) -> Iterator[None]:
    """While active, every batch norm of `model` in train mode uses the global batch's statistics
    under torchrun (nothing changes in a single process, or for a model without batch norm)."""
    if not distributed.active():
        yield
        return
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m not in _synced
             and not (hasattr(m, "has_uninitialized_params") and m.has_uninitialized_params())]
    patched = []
    for m in norms:
        if not _ours(m):  # a deep copy made inside another context already carries the forward
            if "forward" in m.__dict__:  # someone else's instance forward: ours calls it when not synchronising
                m.__dict__["_prunelora_plain_forward"] = m.__dict__["forward"]
            m.forward = types.MethodType(_forward, m)
            patched.append(m)
        _synced.add(m)
    try:
        yield
    finally:
        for m in norms:
            _synced.discard(m)
        for m in patched:
            del m.forward
            plain = m.__dict__.pop("_prunelora_plain_forward", None)
            if plain is not None:
                m.forward = plain
