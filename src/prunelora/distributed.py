"""Data parallelism under torchrun, on torch.distributed (gloo on the CPU, NCCL on CUDA).

`torchrun --nproc-per-node N -m prunelora reproduce ...` starts N copies of the same run. Every
rank draws the same global batches from the same seeded generator and takes its contiguous shard
of each (Feed.epoch; a batch smaller than the ranks is taken whole by each). Each rank's mean loss
is weighted by its shard's share of the batch, and after every backward pass the gradients of the
trainable parameters are averaged over the ranks (one all-reduce of their flattened
concatenation), so every optimiser step is the single-process step on the global batch. DDP itself is not
used: several objectives run more than one forward pass per step (NegGrad+, SCRUB, the teacher's
forward), which DDP's reducer refuses; the averaged gradient is the same. Prefix caches and
evaluation are computed per shard and gathered; only rank 0 writes files (storage's atomic writers),
and every rank waits at each write so that what one reads the others have written.

Batch norm would normalise each shard with its own statistics (as plain DDP does). While training,
train.fit runs its steps inside sync_batchnorm.synchronized(model): every batch norm in train mode then
normalises with the global batch's statistics and updates its running statistics with them
(sync_batchnorm.py), so a model with batch norm (the ResNet) agrees with a single process to float
error, as one without (the ViT) does. Batch norm recalibration after pruning needs no
synchronisation: every rank runs all of the retain set and computes the same statistics.
Dropout is drawn for the global batch: Feed.epoch marks each shard with its rows of the global batch,
train.fit runs the model through sharded_forward, and the conv LoRA's dropout (methods/dropout_conv.py)
draws the whole batch's mask from the step's seed and keeps its shard's rows: the single process's mask.
"""
from __future__ import annotations

import contextvars
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import UserError

T = TypeVar("T")
_solo = False  # rank 0 inside on_main: the other ranks are not at its barriers


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def setup(device: str = "auto") -> None:
    """Join the process group torchrun describes (a no-op for a single process)."""
    if not launched() or active():
        return
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed: run without torchrun")
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active() and not _solo:
        dist.barrier()


def shard_slice(n: int) -> slice:
    """This rank's contiguous rows of n (torch.tensor_split's sizes: the first n % world ranks get one more)."""
    size, extra = divmod(n, world_size())
    r = rank()
    start = r * size + min(r, extra)
    return slice(start, start + size + (1 if r < extra else 0))


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's shard_slice(n) rows, concatenated in rank order, on every rank."""
    if not active():
        return local
    world = world_size()
    sizes = [n // world + (1 if r < n % world else 0) for r in range(world)]
    padded = local.new_zeros((max(sizes),) + tuple(local.shape[1:]))
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def total(value: float) -> float:
    """The sum of `value` over the ranks (the value itself in one process)."""
    if not active():
        return value
    summed = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(summed)
    return float(summed)


def _collective_device() -> torch.device:
    """Where a small tensor must live for the backend's collectives (NCCL: the rank's GPU)."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@functools.cache
def _dtensor() -> type:
    """torch's DTensor class, imported on first use (the CLI's start-up never pays for torch.distributed.tensor)."""
    from torch.distributed.tensor import DTensor

    return DTensor


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a DTensor: a parameter FSDP (fully_shard) splits over the ranks."""
    return isinstance(tensor, _dtensor())


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a sharded tensor (the tensor itself when not sharded)."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def everywhere(flag: bool, tensors: list[torch.Tensor]) -> bool:
    """`flag` computed on this rank's parts of `tensors`, made true on every rank only when it is on all of them
    (one collective, only when some tensor is sharded: unsharded tensors are alike on every rank)."""
    if not active() or not any(is_sharded(t) for t in tensors):
        return flag
    return total(0.0 if flag else 1.0) == 0.0


def shard_weight(samples: int) -> float:
    """The factor that makes this rank's mean loss count as its share of the global batch's mean
    (samples x ranks / global samples): averaged gradients then equal the global batch's exactly,
    whatever the shards' sizes."""
    if not active():
        return 1.0
    return samples * world_size() / total(samples)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of `params` over the ranks, in one collective."""
    if not active():
        return
    # the same graph, hence the same list, on every rank; FSDP's parameters (DTensors) had their gradients
    # reduce-scattered by FSDP itself in the backward pass
    params = [p for p in params if p.grad is not None and not is_sharded(p)]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for param in params:
        count = param.numel()
        param.grad.copy_(flat[offset:offset + count].view_as(param.grad))
        offset += count


# The rows of the global batch that the forward now running sees: (global rows, this rank's first row), or None
# when this rank holds the whole batch (one process, or a batch smaller than the ranks). Set by sharded_forward
# from what Feed.epoch marked on the batch's inputs; read by the layers that must act on the global batch
# (batch norm's statistics, dropout's masks).
_shard: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("prunelora_shard", default=None)
_SHARD_ATTRIBUTE = "_prunelora_shard"


def mark_shard(inputs: torch.Tensor, rows: int, start: int) -> torch.Tensor:
    """Label a rank's shard of a global batch of `rows` rows starting at row `start` (read by sharded_forward)."""
    setattr(inputs, _SHARD_ATTRIBUTE, (rows, start))
    return inputs


def current_shard() -> tuple[int, int] | None:
    """(global rows, first row) of the batch in the forward now running, or None when this rank holds all of it."""
    return _shard.get()


def sharded_forward(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """`forward` that tells the layers inside it which rows of the global batch its input holds (a no-op wrapper
    in one process)."""
    if not active():
        return forward

    def run(inputs: torch.Tensor) -> torch.Tensor:
        token = _shard.set(getattr(inputs, _SHARD_ATTRIBUTE, None))
        try:
            return forward(inputs)
        finally:
            _shard.reset(token)

    return run


def on_main(action: Callable[[], T]) -> T:
    """Run `action` on rank 0 only; its result, or its UserError, reaches every rank."""
    if not active():
        return action()
    global _solo
    outcome: list[Any] = [None]
    if is_main():
        _solo = True
        try:
            outcome[0] = ("ok", action())
        except UserError as exc:
            outcome[0] = ("error", str(exc))
        finally:
            _solo = False
    dist.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise UserError(value)
    return value
