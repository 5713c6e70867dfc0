"""Structured pruning of output channels, kept by masks (the paper) or removed (torch-pruning).

Which channels go: the smallest L2 norm (the paper's), or with score "saliency" the least salient to the
forget set's loss, |gradient x weight| summed over each channel (the first-order estimate of how much the loss
moves without it; torch-pruning's Taylor importance in remove mode), the causal-LM surgery's same option.

Mask mode uses torch.nn.utils.prune.ln_structured (n=2, dim=0) to choose the channels, makes the
zeros permanent, and returns a ChannelMasks constraint that re-applies them after every optimiser
step: without it, Adam and the dense LoRA update re-grow pruned channels (docs/design.md, trap 3).
Remove mode uses torch-pruning's dependency graph to take the channels out of the network, so the
pruned model really is smaller and faster (docs/design.md, trap 2).
"""
from __future__ import annotations

import copy
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from ..data import ImageSet, eval_batches
from ..errors import UserError
from .reinflate import RemovalLog, Removed, exactness, reinflate


def matching_modules(model: nn.Module, pattern: str, kinds=(nn.Conv2d, nn.Linear)) -> dict[str, nn.Module]:
    """Modules of the given kinds whose qualified name fully matches the regex."""
    regex = re.compile(pattern)
    found = {name: m for name, m in model.named_modules() if isinstance(m, kinds) and regex.fullmatch(name)}
    if not found:
        raise UserError(f"no Conv2d or Linear layer matches the layer pattern '{pattern}'")
    return found


@dataclass
class ChannelMasks:
    """Row masks (kept output channels) tied to parameters; apply() zeroes the pruned rows again."""

    rows: dict[str, torch.Tensor] = field(default_factory=dict)  # module name -> bool (out,) kept
    _params: list[tuple[nn.Parameter, torch.Tensor]] = field(default_factory=list)

    def bind(self, param: nn.Parameter, keep: torch.Tensor) -> None:
        shape = (-1,) + (1,) * (param.dim() - 1)
        self._params.append((param, keep.to(param.device, param.dtype).view(shape)))

    @torch.no_grad()
    def apply(self) -> None:
        for param, mask in self._params:
            param.mul_(mask)

    def pruned_channels(self) -> int:
        return int(sum((~keep).sum() for keep in self.rows.values()))


def l2_channel_masks(model: nn.Module, pattern: str, amount: float) -> ChannelMasks:
    """Zero the `amount` share of output channels with the smallest L2 norm in every matching layer."""
    masks = ChannelMasks()
    for name, module in matching_modules(model, pattern).items():
        torch_prune.ln_structured(module, "weight", amount=amount, n=2, dim=0)
        keep = module.weight_mask.flatten(1).any(dim=1)
        torch_prune.remove(module, "weight")
        masks.rows[name] = keep.cpu()
        masks.bind(module.weight, keep)
    return masks


def forget_gradients(model: nn.Module, forget: ImageSet, batch_size: int) -> None:
    """Leave in every parameter's .grad the gradient of the forget set's mean cross-entropy (the model in eval
    mode: batch norms use and keep their running statistics). The caller clears them."""
    if forget is None or len(forget) == 0:
        raise UserError("prune score 'saliency' ranks channels by the forget set's loss: it needs a forget set "
                        "(or use --prune-score l2)")
    was_training = model.training
    saved = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        for param in saved:
            param.requires_grad_(True)
        for images, labels in eval_batches(forget, batch_size):
            loss = nn.functional.cross_entropy(model(images).float(), labels, reduction="sum") / len(forget)
            loss.backward()
    finally:
        for param, needed in saved.items():
            param.requires_grad_(needed)
        model.train(was_training)


def clear_gradients(model: nn.Module) -> None:
    model.zero_grad(set_to_none=True)


def saliency_channel_masks(model: nn.Module, pattern: str, amount: float, forget: ImageSet,
                           batch_size: int) -> ChannelMasks:
    """Zero the `amount` share of output channels least salient to the forget set's loss (sum of
    |gradient x weight| over each channel) in every matching layer: as many per layer as the L2 rule zeroes."""
    forget_gradients(model, forget, batch_size)
    masks = ChannelMasks()
    try:
        for name, module in matching_modules(model, pattern).items():
            weight, grad = module.weight.detach(), module.weight.grad
            if grad is None:
                raise UserError(f"prune score 'saliency': the forget set's loss does not reach layer {name} "
                                "(use --prune-score l2)")
            score = (grad.detach() * weight).abs().flatten(1).sum(dim=1)
            channels = score.numel()
            pruned = round(amount * channels)  # torch's ln_structured count, so both scores prune alike
            keep = torch.ones(channels, dtype=torch.bool, device=score.device)
            if pruned:
                keep[torch.topk(score, pruned, largest=False).indices] = False
            with torch.no_grad():
                module.weight.mul_(keep.to(weight.dtype).view((-1,) + (1,) * (weight.dim() - 1)))
            masks.rows[name] = keep.cpu()
            masks.bind(module.weight, keep)
    finally:
        clear_gradients(model)
    return masks


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: ImageSet, batch_size: int = 512) -> int:
    """Recompute every batch norm's running statistics as exact averages over `data` (no gradients).

    Returns the number of batch norms recalibrated (0 for a model without any: nothing runs).
    Under torchrun every rank runs all of `data` (nothing here is sharded) on the same weights, so every rank
    computes the single process's statistics with no synchronisation; it runs before training, outside
    distributed.synchronized_batchnorm (inside, each rank's copy of a batch would be counted once per rank).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(data) == 0:
        return 0
    saved = [(m, m.momentum, m.training) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over all batches
        m.train()
    for images, _ in eval_batches(data, batch_size):
        model(images)
    for m, momentum, training in saved:
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    return len(norms)


def bind_lora_masks(peft_model: nn.Module, masks: ChannelMasks) -> list[str]:
    """Mask the rows of each pruned layer's lora_B, so the merged update keeps the pruned structure.

    Layers are matched by their exact qualified name in the wrapped model (PEFT keeps the
    original names under get_base_model()), never by suffix: a torchvision-style stem `conv1`
    must not bind its mask to every block's `conv1` adapter. Returns the names bound.
    """
    modules = dict(peft_model.get_base_model().named_modules())
    bound = []
    for name, keep in masks.rows.items():
        module = modules.get(name)
        if module is not None and hasattr(module, "lora_B"):
            for lora_b in module.lora_B.values():
                masks.bind(lora_b.weight, keep)
            bound.append(name)
    return bound


def removal_blocker(model: nn.Module, pattern: str) -> str | None:
    """Why the layers matching `pattern` cannot be physically removed, or None when they can.

    Convolutions and expanding Linears (an MLP's hidden layer, ConvNeXt's pwconv1: removing their
    outputs shrinks only the next layer's inputs) can go; a Linear that projects back into the
    residual stream (attention output, MLP output) cannot without shrinking every block.
    """
    stream = [n for n, m in matching_modules(model, pattern).items()
              if isinstance(m, nn.Linear) and m.out_features <= m.in_features]
    if stream:
        return (f"prune mode 'remove' cannot take out the outputs of {stream[0]}: it is a Linear projection into "
                "the residual stream, so removing its outputs would shrink every block")
    return None


USE_MASK = " (use --prune-mode mask, or auto: it masks wherever removing is not exact)"


# Whether remove mode is exact depends on the architecture only: one dry run per (layers, shapes, pattern, amount),
# kept as (why the write-back is not exact, why it would prune less than masks), under a digest of that key; the
# oldest verdicts go once a long-lived process has seen _KEPT_VERDICTS architectures.
_REMOVAL_VERDICTS: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
_KEPT_VERDICTS = 64


def removal_reason(model: nn.Module, pattern: str, amount: float, head: str, example: torch.Tensor,
                   as_masks: bool = True) -> str | None:
    """Why prune mode 'remove' is not exact for this model, or None when it is.

    Exact means the pruned network, written back in the original's shapes with the removed channels as zeros
    (methods/reinflate.py), gives the pruned network's outputs (true of convolutions with per-channel batch
    norms, not of a group or layer norm over pruned channels, nor of a projection into a residual stream).
    as_masks (what `prune_mode: auto` asks): also every layer of the pattern loses as many channels as masks
    would take (torch-pruning prunes a coupled group whole or not at all: a group held by a layer outside the
    pattern stays). A dry run on a copy proves both (L2 channels: which channels go changes neither); the
    verdict is kept per architecture.
    """
    reason = removal_blocker(model, pattern)
    if reason:
        return reason
    key = hashlib.sha256(repr((type(model).__qualname__, pattern, amount, head, tuple(example.shape[1:]),
                               [(name, tuple(t.shape)) for name, t in model.state_dict().items()])).encode()).hexdigest()
    if key not in _REMOVAL_VERDICTS:
        _REMOVAL_VERDICTS[key] = _dry_run(model, pattern, amount, head, example)
        while len(_REMOVAL_VERDICTS) > _KEPT_VERDICTS:
            _REMOVAL_VERDICTS.popitem(last=False)
    _REMOVAL_VERDICTS.move_to_end(key)
    inexact, prunes_less = _REMOVAL_VERDICTS[key]
    return inexact or (prunes_less if as_masks else None)


def _dry_run(model: nn.Module, pattern: str, amount: float, head: str,
             example: torch.Tensor) -> tuple[str | None, str | None]:
    pruned = copy.deepcopy(model)
    try:
        _, removed = remove_channels(pruned, pattern, amount, head, example)
        back = reinflate(pruned, copy.deepcopy(model), removed)
    except UserError as err:
        return str(err), None
    except Exception as err:  # noqa: BLE001 - torch-pruning cannot trace every graph: then masks are the safe choice
        return f"torch-pruning could not remove this model's channels ({type(err).__name__}: {err})", None
    gap, scale = exactness(pruned, back, example)
    if gap > 1e-4 * max(1.0, scale):
        return (f"the pruned network written back into this architecture differs by {gap:.3g} (a layer or group "
                "norm normalises over pruned channels)"), None
    layers = {name: module for name, module in matching_modules(model, pattern).items() if name != head}
    short = [name for name, module in layers.items()
             if len(removed.get(name, {}).get("out", ())) < int(amount * _outputs(module))]
    if short:  # torch-pruning prunes a coupled group whole or not at all
        return None, (f"remove mode would prune fewer channels than masks in {len(short)} of the {len(layers)} "
                      f"layers (e.g. {short[0]}, coupled to layers outside the pattern), so it would not be the "
                      "same pruning")
    return None, None


def _outputs(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def remove_channels(model: nn.Module, pattern: str, amount: float, head: str, example: torch.Tensor,
                    forget: ImageSet | None = None, batch_size: int = 128) -> tuple[dict[str, int], Removed]:
    """Physically remove the lowest-L2 `amount` of output channels with torch-pruning (with `forget`: the least
    salient to its loss, torch-pruning's group Taylor importance |gradient x weight|).

    Coupled layers (batch norms, residual groups, the next layer's inputs) are pruned together by
    torch-pruning's dependency graph; layers outside the pattern are never the root of a group,
    and the head keeps its outputs. Returns parameter counts before and after, and the original
    indices removed from each layer (methods/reinflate.py puts them back as zeros).
    """
    import torch_pruning as tp

    reason = removal_blocker(model, pattern)
    if reason:
        raise UserError(reason + USE_MASK)
    targets = set(matching_modules(model, pattern).values())
    ignored = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in targets]
    head_module = model.get_submodule(head)
    if head_module not in ignored:
        ignored.append(head_module)
    before = sum(p.numel() for p in model.parameters())
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    for param in model.parameters():  # torch-pruning traces the graph through autograd
        param.requires_grad_(True)
    importance = tp.importance.MagnitudeImportance(p=2)
    if forget is not None:
        importance = tp.importance.GroupTaylorImportance()
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=importance,
        pruning_ratio=amount, ignored_layers=ignored, global_pruning=False,
    )
    if forget is not None:  # after the pruner traced the graph: its trace leaves no gradients behind
        forget_gradients(model, forget, batch_size)
    log = RemovalLog(model)
    for group in pruner.step(interactive=True):  # each group's indices recorded before it prunes
        for dep, idxs in group:
            if pruner.DG.is_out_channel_pruning_fn(dep.handler):
                log.record(dep.target.module, "out", idxs)
            elif pruner.DG.is_in_channel_pruning_fn(dep.handler):
                log.record(dep.target.module, "in", idxs)
        group.prune()
    clear_gradients(model)
    for name, param in model.named_parameters():  # pruned layers hold new Parameter objects
        param.requires_grad_(name not in frozen)
    return {"params_before": before, "params_after": sum(p.numel() for p in model.parameters())}, log.removed()
