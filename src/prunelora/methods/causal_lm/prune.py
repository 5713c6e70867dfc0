"""Structured pruning of a causal LM: MLP neurons and attention heads physically removed, the config rewritten.

The paper prunes by weight magnitude (L1 structured pruning, before LoRA); `saliency` instead removes the
units whose weights matter least to the forget set's loss (|gradient x weight|), an option. Every block
keeps the same number of units, because a transformers config states one MLP width and one head count
for all blocks: what from_pretrained rebuilds must be what was pruned. Heads go by key/value group (with
grouped-query attention a key/value head serves several query heads), and only where the config states
head_dim (else the width per head would change on reload); a pruned model is saved and reloaded to prove
it (check_reload), and a model that does not reload to the same logits is refused in one line.
"""
from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable

import torch
from torch import nn

from ... import distributed
from ...errors import UserError
from ...models.causal_lm.structure import LMPlan, dims, infer_plan


def _rows(module: nn.Module) -> torch.Tensor:
    """The weight as [out, in] whatever the layer type."""
    return module.weight if isinstance(module, nn.Linear) else module.weight.t()


def _grad_rows(module: nn.Module) -> torch.Tensor | None:
    g = module.weight.grad
    if g is None:
        return None
    return g if isinstance(module, nn.Linear) else g.t()


def _score(module: nn.Module, saliency: bool) -> torch.Tensor:
    """Per weight: its magnitude, or |gradient x weight| (saliency), as [out, in]."""
    w = _rows(module).detach()
    if not saliency:
        return w.abs()
    g = _grad_rows(module)
    if g is None:
        raise UserError("saliency pruning found no gradient: the forget set's loss did not reach this layer")
    return (g.detach() * w).abs()


def _keep_out(module: nn.Module, index: torch.Tensor) -> None:
    """Keep output units `index` of a projection."""
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            module.weight = nn.Parameter(module.weight[index].clone())
            module.out_features = len(index)
        else:  # Conv1D: weight [in, out], bias [out]
            module.weight = nn.Parameter(module.weight[:, index].clone())
            module.nf = len(index)
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias[index].clone())


def _keep_in(module: nn.Module, index: torch.Tensor) -> None:
    """Keep input units `index` of a projection."""
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            module.weight = nn.Parameter(module.weight[:, index].clone())
            module.in_features = len(index)
        else:
            module.weight = nn.Parameter(module.weight[index].clone())
            if hasattr(module, "nx"):
                module.nx = len(index)


def kept_count(total: int, amount: float) -> int:
    return max(1, total - int(round(total * amount)))


def prune_mlp(model: nn.Module, plan: LMPlan, amount: float, saliency: bool = False) -> dict[str, int]:
    """Remove the `amount` share of each block's MLP neurons with the lowest scores; rewrite the width."""
    if plan.inner_field is None:
        raise UserError(f"{type(model).__name__}: its config states no MLP width (intermediate_size, n_inner): "
                        "MLP pruning could not be reloaded; use --prune-targets heads or another surgery")
    modules = dict(model.named_modules())
    keep = kept_count(plan.blocks[0].inner, amount)
    if keep == plan.blocks[0].inner:
        return {"mlp_neurons_kept": keep}
    for block in plan.blocks:
        scores = sum(_score(modules[n], saliency).norm(dim=1) for n in block.expand)
        scores = scores + _score(modules[block.contract], saliency).norm(dim=0)
        index = torch.sort(torch.topk(scores, keep).indices).values
        for name in block.expand:
            _keep_out(modules[name], index)
        _keep_in(modules[block.contract], index)
        block.inner = keep
    setattr(model.config, plan.inner_field, keep)
    return {"mlp_neurons_kept": keep}


def prune_heads(model: nn.Module, plan: LMPlan, amount: float, saliency: bool = False) -> dict[str, int]:
    """Remove the `amount` share of each block's key/value groups (with their query heads) with the lowest
    scores; rewrite the head counts and state head_dim."""
    if plan.fused_qkv:
        raise UserError(f"{type(model).__name__} computes queries, keys and values in one fused projection: its "
                        "heads cannot be pruned separately; use --prune-targets mlp")
    head_dim = plan.head_dim or plan.hidden // plan.heads
    groups, per_group = plan.kv_heads, plan.heads // plan.kv_heads
    keep = kept_count(groups, amount)
    modules = dict(model.named_modules())
    for block in plan.blocks:
        *inputs, output = block.attention_projections
        q, k, v = inputs if len(inputs) == 3 else (None, None, None)
        if q is None:
            raise UserError(f"{block.attention}: expected separate query, key and value projections")
        q_width = dims(modules[q])[1]
        scores = torch.zeros(groups)
        for name, heads in ((q, plan.heads), (k, groups), (v, groups)):
            per = _score(modules[name], saliency).norm(dim=1).reshape(heads, -1).sum(1)
            scores += per.reshape(groups, -1).sum(1).cpu()
        scores += _score(modules[output], saliency).norm(dim=0)[:q_width].reshape(groups, -1).sum(1).cpu()
        kept_groups = torch.sort(torch.topk(scores, keep).indices).values
        kv_index = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in kept_groups.tolist()])
        q_heads = [g * per_group + j for g in kept_groups.tolist() for j in range(per_group)]
        q_index = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in q_heads])
        _keep_out(modules[q], q_index.to(modules[q].weight.device))
        _keep_out(modules[k], kv_index.to(modules[k].weight.device))
        _keep_out(modules[v], kv_index.to(modules[v].weight.device))
        _keep_in(modules[output], q_index.to(modules[output].weight.device))
    model.config.num_attention_heads = keep * per_group
    if hasattr(model.config, "num_key_value_heads"):
        model.config.num_key_value_heads = keep
    model.config.head_dim = head_dim
    plan.heads, plan.kv_heads, plan.head_dim = keep * per_group, keep, head_dim
    return {"heads_kept": keep * per_group, "kv_heads_kept": keep}


def saliency_gradients(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor]) -> None:
    """The forget loss's gradients on every weight (saliency pruning reads them, then they are cleared)."""
    model.zero_grad(set_to_none=True)
    was = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    loss(model).backward()
    for p, flag in was.items():
        p.requires_grad_(flag)


def prune(model: nn.Module, targets: str, amount: float, saliency_loss: Callable[[nn.Module], torch.Tensor] | None
          = None) -> dict[str, int]:
    """Prune `model` in place (mlp, heads or mlp+heads) and prove it reloads; returns what was kept."""
    plan = infer_plan(model)
    if saliency_loss is not None:
        saliency_gradients(model, saliency_loss)
    kept: dict[str, int] = {}
    if "heads" in targets:
        kept.update(prune_heads(model, plan, amount, saliency_loss is not None))
    if "mlp" in targets:
        kept.update(prune_mlp(model, plan, amount, saliency_loss is not None))
    model.zero_grad(set_to_none=True)
    distributed.on_main(lambda: check_reload(model, targets))  # every rank pruned alike: one proves it
    return kept


def check_reload(model: nn.Module, what: str) -> None:
    """Save the pruned model and load it back with from_pretrained: same logits, or a one-line refusal."""
    import transformers as T

    probe = torch.arange(min(8, model.config.vocab_size), device=next(model.parameters()).device)[None]
    was = model.training
    model.eval()
    with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        expected = model(probe).logits
        copy.deepcopy(model).cpu().save_pretrained(folder)
        try:
            dtype = next(model.parameters()).dtype  # bf16 weights come back as bf16: the same numbers, compared as such
            back = T.AutoModelForCausalLM.from_pretrained(folder).to(probe.device, dtype).eval()
            got = back(probe).logits
            same = got.shape == expected.shape and torch.allclose(got.float(), expected.float(), atol=1e-4, rtol=1e-4)
        except (RuntimeError, ValueError) as exc:
            same, expected = False, str(exc).splitlines()[0]
    model.train(was)
    if not same:
        raise UserError(f"pruning {what} cannot be reloaded by from_pretrained for {type(model).__name__} (its config "
                        "does not describe the pruned shapes)" + ("; use --prune-targets mlp" if what != "mlp" else ""))
