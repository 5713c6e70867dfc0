"""Fully sharded training for the causal-LM task: torch FSDP2 (`fully_shard`) over torchrun's ranks.

    torchrun --nproc-per-node 2 -m prunelora unlearn --task causal-lm --parallel fsdp ...

With `--parallel data` (the default) every rank holds the whole model, its gradients and its optimiser
state, and train.fit averages the gradients (distributed.py). With `--parallel fsdp` each decoder block,
then the model as a whole, is one FSDP group: every rank keeps 1/N of each parameter, of its gradient and
of AdamW's two moments, gathers a block's parameters for its forward and backward passes and frees them
after, and FSDP reduce-scatters (averages) the gradients itself, so train.fit's all-reduce leaves those
parameters alone. The batches, their shards and the loss weighting are the data-parallel ones, so a step
is still the single process's step on the global batch (tested in float64 against one process).

What is sharded is the training: before it, the model to train is copied to the CPU; after it, every
rank gathers the trained weights into that copy, which is evaluated and saved whole, as without FSDP.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from ... import distributed
from ...errors import SettingWarning
from ...models.causal_lm.structure import decoder_blocks

T = TypeVar("T")


def wanted(parallel: str) -> bool:
    """Whether to shard: FSDP asked for, and several processes running."""
    return parallel == "fsdp" and distributed.active()


def shard(model: nn.Module) -> float:
    """fully_shard every decoder block, then the transformers model around them (in place); the share of the
    parameters' elements this rank now holds (about 1/ranks)."""
    from torch.distributed.fsdp import fully_shard

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for block in decoder_blocks(base):
        fully_shard(block)
    fully_shard(base)
    params = list(model.parameters())
    return sum(distributed.local(p).numel() for p in params) / max(1, sum(p.numel() for p in params))


def gather_into(sharded: nn.Module, whole: nn.Module) -> nn.Module:
    """Every rank loads the sharded model's full weights into `whole` (a collective: all ranks call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    whole.load_state_dict({k: v.to(whole_device(whole)) for k, v in state.items()})
    return whole


def whole_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def trained(model: nn.Module, parallel: str, train: Callable[[nn.Module], T]) -> tuple[nn.Module, T, dict]:
    """(the trained model, train's result, how it was sharded): train(model) as is, or on a sharded model whose
    weights are then gathered into a whole copy (on `model`'s device)."""
    if not wanted(parallel):
        if parallel == "fsdp":
            warnings.warn("--parallel fsdp shards only under torchrun with 2 or more processes: this single process "
                          "trains the whole model (run it with torchrun --nproc-per-node N)", SettingWarning,
                          stacklevel=2)
        return model, train(model), {}
    device = whole_device(model)
    whole = copy.deepcopy(model).to("cpu")
    held = shard(model)
    result = train(model)
    gather_into(model, whole)
    return whole.to(device), result, {"parallel": "fsdp", "ranks": distributed.world_size(), "rank_share": held}
