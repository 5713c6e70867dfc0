"""Removed channels put back as exact zeros: a remove-mode model in its original architecture's shapes.

`--prune-mode remove` takes channels out, so the unlearned model no longer fits the architecture it
came from: a Hugging Face config or a user's factory cannot rebuild it. Its function can be written
in the original shapes all the same: every removed output channel gets zero weights and bias, its
batch norm a zero scale and shift (so it outputs exactly 0 whatever its statistics), and every layer
that read it a zero input column. Downstream layers then receive exact zeros where the pruned model
had nothing, and the re-inflated model computes what the pruned one computes. That holds where
every normalisation over removed channels is a batch norm; a layer norm or group norm over them
would average the zeros in, and `check_exact` says so.

Which indices went where is recorded while torch-pruning prunes (`removed_indices`), per module and
per side ("out": output channels; "in": input channels), in the original's numbering.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

Removed = dict[str, dict[str, list[int]]]  # module name -> {"out"|"in": original indices removed}

# Parts of a state-dict key that name no module of the user's model: PEFT's wrappers and adapters.
_WRAPPER_PARTS = {"base_layer", "lora_A", "lora_B", "default", "modules_to_save", "original_module"}


def _side_size(module: nn.Module, side: str) -> int | None:
    names = ("out_channels", "out_features", "num_features") if side == "out" else ("in_channels", "in_features")
    for name in names:
        if hasattr(module, name):
            return int(getattr(module, name))
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    return None


class RemovalLog:
    """Original indices of what each torch-pruning group removes (several groups may prune one layer)."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.kept: dict[tuple[str, str], list[int]] = {}  # original indices still there
        self.sizes: dict[tuple[str, str], int] = {}  # original sizes (a side is first seen unpruned)

    def record(self, module: nn.Module, side: str, idxs: Iterable[int]) -> None:
        name = self.names.get(id(module))
        if name is None:
            return
        key = (name, side)
        if key not in self.kept:
            size = _side_size(module, side)
            if size is None:
                return
            self.kept[key] = list(range(size))
            self.sizes[key] = size
        current = self.kept[key]  # idxs number the layer as it is now, after earlier groups
        gone = {int(getattr(i, "idx", i)) for i in idxs}  # torch-pruning's (idx, root_idx) pairs: the layer's own
        self.kept[key] = [orig for pos, orig in enumerate(current) if pos not in gone]

    def removed(self) -> Removed:
        out: Removed = {}
        for (name, side), kept in self.kept.items():
            gone = sorted(set(range(self.sizes[(name, side)])) - set(kept))
            if gone:
                out.setdefault(name, {})[side] = gone
        return out


def owner(key: str) -> tuple[str, str]:
    """(module name, parameter name) of a state-dict key, PEFT's wrappers stripped."""
    key = key.removeprefix("base_model.model.")
    parts = key.split(".")
    module = [p for p in parts[:-1] if p not in _WRAPPER_PARTS]
    return ".".join(module), parts[-1]


def _grown_shape(key: str, small: torch.Tensor, record: dict[str, list[int]]) -> list[int]:
    """A tensor's original shape from what its layer lost: lora_A grows on its input side (dim 1), lora_B
    on its output side (dim 0), a layer's own weight on both."""
    parts = key.split(".")
    shape = list(small.shape)
    sides = {1: "in"} if "lora_A" in parts else {0: "out"} if "lora_B" in parts else {0: "out", 1: "in"}
    for dim, side in sides.items():
        if dim < len(shape):
            shape[dim] += len(record.get(side, []))
    return shape


def reinflated_state(state: dict[str, torch.Tensor], removed: Removed,
                     shapes: dict[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """The state dict in the original shapes: removed positions hold zeros (a batch norm's running variance 1).

    shapes (by key, e.g. a freshly built model's) say the original shapes where known; elsewhere
    (saved adapters) they follow from what each layer lost.
    """
    out = {}
    for key, small in state.items():
        module, param = owner(key)
        record = removed.get(module, {})
        full = list(shapes[key]) if shapes is not None and key in shapes else _grown_shape(key, small, record)
        if full == list(small.shape):
            out[key] = small
            continue
        fill = 1.0 if param == "running_var" else 0.0
        tensor = small
        for dim in range(small.dim()):
            if tensor.shape[dim] == full[dim]:
                continue
            side = "out" if dim == 0 else "in"  # lora_A's dim 1 is its layer's input, lora_B's dim 0 its output
            gone = set(record.get(side, []))
            kept = [i for i in range(full[dim]) if i not in gone]
            if len(kept) != tensor.shape[dim]:
                raise ValueError(f"{key}: {len(kept)} kept {side} channels recorded, the tensor has {tensor.shape[dim]}")
            shape = list(tensor.shape)
            shape[dim] = full[dim]
            grown = torch.full(shape, fill, dtype=tensor.dtype, device=tensor.device)
            grown.index_copy_(dim, torch.tensor(kept, device=tensor.device), tensor)
            tensor = grown
        out[key] = tensor
    return out


def strip(removed: Removed, prefix: str) -> Removed:
    """The record with a wrapper's prefix taken off its layer names (prunelora trains user models as `inner.`)."""
    return {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v for k, v in removed.items()}


def reinflate(pruned: nn.Module, template: nn.Module, removed: Removed) -> nn.Module:
    """`template` (a model of the original architecture, same layer names) given the pruned model's function."""
    shapes = {k: v.shape for k, v in template.state_dict().items()}
    state = {k: v.detach() for k, v in pruned.state_dict().items()}
    template.load_state_dict(reinflated_state(state, removed, shapes), strict=True)
    return template


@torch.no_grad()
def exactness(pruned: nn.Module, reinflated: nn.Module, example: torch.Tensor) -> tuple[float, float]:
    """(largest absolute difference of the two models' outputs on `example`, largest absolute output of
    `pruned`: what a tolerance is relative to), in eval mode, one forward pass each."""
    modes = pruned.training, reinflated.training
    pruned.eval(), reinflated.eval()
    try:
        out = pruned(example)
        return float((out - reinflated(example)).abs().max()), float(out.abs().max())
    finally:
        pruned.train(modes[0]), reinflated.train(modes[1])


def check_exact(pruned: nn.Module, reinflated: nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference of the two models' outputs on `example`, in eval mode."""
    return exactness(pruned, reinflated, example)[0]
