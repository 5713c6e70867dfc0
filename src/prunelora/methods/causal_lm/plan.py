"""`prunelora plan --task causal-lm --model hf:DIR`: what each surgery touches, with parameter counts."""
from __future__ import annotations

from torch import nn

from ...config.causal_lm import LMUnlearnConfig
from ...models.causal_lm.structure import dims, infer_plan, parameter_count
from .surgery import operate


def describe(model: nn.Module, settings: LMUnlearnConfig) -> str:
    """The inferred structure, then per surgery the modules it touches and what trains."""
    plan = infer_plan(model)
    total = sum(p.numel() for p in model.parameters())
    first = plan.blocks[0]
    lines = [f"{type(model).__name__}: {len(plan.blocks)} decoder blocks, hidden {plan.hidden}, MLP width "
             f"{first.inner}, {plan.heads} heads ({plan.kv_heads} key/value), {total:,} parameters",
             f"  attention: {', '.join(p.rsplit('.', 1)[-1] for p in first.attention_projections)}"
             f"{' (fused queries/keys/values)' if plan.fused_qkv else ''}",
             f"  MLP: expand {', '.join(p.rsplit('.', 1)[-1] for p in first.expand)}, contract "
             f"{first.contract.rsplit('.', 1)[-1]}", *[f"  note: {n}" for n in plan.notes], ""]
    targets = plan.targets(settings.lora_targets)
    modules = dict(model.named_modules())
    adapter = sum(settings.lora_r * sum(dims(modules[t])) for t in targets)
    lines.append(f"none        trains all {total:,} parameters")
    lines.append(f"lora        rank {settings.lora_r} on {len(targets)} projections "
                 f"({', '.join(plan.suffixes(settings.lora_targets))}): trains {adapter:,} parameters "
                 f"({adapter / total:.2%}), the {parameter_count(model, targets):,} they adapt frozen")
    try:
        pruned = operate(model, "prune", settings)
        kept = sum(p.numel() for p in pruned.model.parameters())
        what = ", ".join(f"{k} {v}" for k, v in pruned.kept.items())
        lines.append(f"prune       {settings.prune_targets} by {settings.prune_score}, {settings.prune_amount:.0%} "
                     f"removed ({what}): {total - kept:,} parameters removed, trains the {kept:,} left")
        both = operate(model, "prune+lora", settings)
        lines.append(f"prune+lora  prunes as above, then LoRA: trains {both.trainable():,} parameters of "
                     f"{kept:,} ({both.trainable() / total:.2%} of the original's)")
    except Exception as exc:  # a model whose pruning cannot reload says why, and the plan goes on
        if type(exc).__name__ != "UserError":
            raise
        lines.append(f"prune       not possible: {exc}")
    return "\n".join(lines)
