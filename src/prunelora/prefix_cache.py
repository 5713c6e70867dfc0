"""Cached frozen prefix: run the part of the network that cannot change once, train on its output.

When every trainable parameter sits after some stage of an nn.Sequential network (the ViT's LoRA
and PruneLoRA adapt only the last block and the head), and the stages before it are frozen and
deterministic (no batch norm, whose running statistics move in train mode; no active dropout), and
the data is not augmented, then the prefix's output for an image never changes during unlearning.
Computing it once removes most of the forward pass and, because nothing before the cut needs
gradients, all of the backward pass below it (docs/design.md, traps 5 and 13).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import distributed
from .data import ImageSet, to_float

FALLBACK_BUDGET_BYTES = 2 * 2**30


def cache_budget_bytes(device: torch.device, share: float = 0.25) -> int:
    """A quarter of the device's free memory (CUDA) or of the available RAM (CPU; 2 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * share)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * share)
    except (OSError, ValueError):
        return FALLBACK_BUDGET_BYTES
    return FALLBACK_BUDGET_BYTES


def flat_stages(model: nn.Module) -> list[nn.Module] | None:
    """The network as a flat list of stages, nested nn.Sequential expanded; None if not sequential."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base, nn.Sequential):
        return None
    stages: list[nn.Module] = []
    for child in base:
        if isinstance(child, nn.Sequential):
            stages.extend(flat_stages(child) or [])
        else:
            stages.append(child)
    return stages


def _deterministic_and_frozen(stages: list[nn.Module]) -> bool:
    for stage in stages:
        for module in stage.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                return False
            if isinstance(module, nn.Dropout) and module.p > 0:
                return False
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                return False
    return True


def split_point(stages: list[nn.Module]) -> int:
    """Index of the first stage holding a trainable parameter (len(stages) if none)."""
    for i, stage in enumerate(stages):
        if any(p.requires_grad for p in stage.parameters()):
            return i
    return len(stages)


@dataclass
class PrefixCache:
    features: torch.Tensor  # prefix output for every training sample, in data order
    prefix_len: int
    suffix_stages: list[nn.Module]

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.suffix_stages:
            x = stage(x)
        return x

    def describe(self) -> dict:
        return {"prefix_stages": self.prefix_len, "bytes": self.features.numel() * self.features.element_size(),
                "shape": list(self.features.shape), "device": str(self.features.device)}

    @classmethod
    def build(cls, model: nn.Module, data: ImageSet, batch_size: int = 256,
              budget_bytes: int | None = None) -> PrefixCache | None:
        """The cache, or None where it would not be exact, would save nothing, or would not fit the budget."""
        stages = flat_stages(model)
        if not stages:
            return None
        cut = split_point(stages)
        if cut < 2 or cut >= len(stages) or not _deterministic_and_frozen(stages[:cut]):
            return None
        prefix = stages[:cut]
        with torch.no_grad():
            probe = to_float(data.images[:1])
            for stage in prefix:
                probe = stage(probe)
            budget = cache_budget_bytes(data.labels.device) if budget_bytes is None else budget_bytes
            if probe.numel() * probe.element_size() * len(data) > budget:
                return None  # fall back to the plain path
            n = len(data)
            rows = distributed.shard_slice(n)  # under torchrun each rank computes its shard, then all gather
            mine = data.subset(torch.arange(n)[rows]) if distributed.active() else data
            features = torch.empty((len(mine),) + tuple(probe.shape[1:]), dtype=probe.dtype, device=probe.device)
            for start in range(0, len(mine), batch_size):
                x = to_float(mine.images[start:start + batch_size])
                for stage in prefix:
                    x = stage(x)
                features[start:start + batch_size] = x
            features = distributed.gather_rows(features, n)
        return cls(features, cut, stages[cut:])
