"""What a causal LM is made of, inferred from its structure rather than its names (LayerPlan for transformers).

Llama, Qwen2, Mistral, Gemma, Phi and GPT-2 name their parts differently (q_proj/c_attn/..., gate_proj/up_proj/
fc1/c_fc, down_proj/fc2/c_proj) but share one shape: a list of decoder blocks, each with an attention
module (projections from the hidden width, then one back to it) and an MLP (one or two projections from the
hidden width to an inner width, one back). A projection is an nn.Linear or GPT-2's Conv1D (weight stored
transposed). The plan names, per block, the attention projections in order, the MLP's expanding and
contracting projections, the inner width, and the config fields pruning rewrites.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ...errors import UserError


def is_projection(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def dims(module: nn.Module) -> tuple[int, int]:
    """(in, out) of a projection (Conv1D stores its weight as [in, out])."""
    w = module.weight
    return (int(w.shape[1]), int(w.shape[0])) if isinstance(module, nn.Linear) else (int(w.shape[0]), int(w.shape[1]))


@dataclass
class BlockPlan:
    """One decoder block's parts, as module names relative to the model."""

    name: str
    attention: str  # the attention module
    attention_projections: list[str]  # in call order: queries/keys/values (or one fused), then the output
    mlp: str
    expand: list[str]  # hidden -> inner (up, and gate where there is one)
    contract: str  # inner -> hidden (down)
    inner: int


@dataclass
class LMPlan:
    """The blocks of a causal LM and what each surgery touches."""

    hidden: int
    blocks: list[BlockPlan]
    heads: int
    kv_heads: int
    head_dim: int | None  # stated by the config (None: derived from hidden // heads, so heads cannot be pruned)
    inner_field: str | None  # the config field holding the MLP width (intermediate_size, n_inner)
    fused_qkv: bool = False
    notes: list[str] = field(default_factory=list)

    def suffixes(self, which: str) -> list[str]:
        """Module-name suffixes of the projections LoRA adapts: all, attention, mlp, or a comma-separated list."""
        attention = {p.rsplit(".", 1)[-1] for b in self.blocks for p in b.attention_projections}
        mlp = {p.rsplit(".", 1)[-1] for b in self.blocks for p in [*b.expand, b.contract]}
        if which == "attention":
            return sorted(attention)
        if which == "mlp":
            return sorted(mlp)
        if which == "all":
            return sorted(attention | mlp)
        names = [n.strip() for n in which.split(",") if n.strip()]
        unknown = [n for n in names if n not in attention | mlp]
        if unknown or not names:
            raise UserError(f"lora_targets '{which}': '{(unknown or [''])[0]}' is no projection of this model "
                            f"(its projections: {', '.join(sorted(attention | mlp))}; or all, attention, mlp)")
        return names

    def targets(self, which: str) -> list[str]:
        """Full module names of the projections LoRA adapts."""
        wanted = set(self.suffixes(which))
        return [p for b in self.blocks for p in [*b.attention_projections, *b.expand, b.contract]
                if p.rsplit(".", 1)[-1] in wanted]


def _blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    layers = model.config.num_hidden_layers
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == layers]
    if not found:
        raise UserError(f"{type(model).__name__}: no list of {layers} decoder blocks found (the config's "
                        "num_hidden_layers): not a decoder-only transformer prunelora can plan")
    return found[0]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a transformers causal LM (not PEFT-wrapped), in order."""
    return _blocks(model)[1]


def _block(name: str, block: nn.Module, hidden: int) -> BlockPlan:
    groups: dict[str, list[tuple[str, nn.Module]]] = {}
    for sub, module in block.named_modules():
        if "lora_" in sub or not is_projection(module):  # an adapter's own matrices are not the model's parts
            continue
        sub = sub.removesuffix(".base_layer")  # a PEFT-wrapped projection: the layer it wraps
        if "." in sub:
            groups.setdefault(sub.rsplit(".", 1)[0], []).append((sub, module))
    mlp = attention = None
    for parent, members in groups.items():
        shapes = [dims(m) for _, m in members]
        widths = {o for i, o in shapes[:-1]}
        inner = next(iter(widths)) if len(widths) == 1 else None
        if mlp is None and len(members) in (2, 3) and inner is not None and shapes[-1] == (inner, hidden) \
                and all(s == (hidden, inner) for s in shapes[:-1]):
            mlp = (parent, members, inner)  # up (and gate) from the hidden width, down back to it
        elif len(members) >= 2 and shapes[-1][1] == hidden:
            attention = (parent, members)
    if mlp is None or attention is None:
        raise UserError(f"decoder block {name} ({type(block).__name__}): no {'MLP' if mlp is None else 'attention'} "
                        "of the usual shape found (projections from the hidden width and back)")
    parent, members, inner = mlp
    return BlockPlan(name, f"{name}.{attention[0]}", [f"{name}.{n}" for n, _ in attention[1]], f"{name}.{parent}",
                     [f"{name}.{n}" for n, _ in members[:-1]], f"{name}.{members[-1][0]}", inner)


def infer_plan(model: nn.Module) -> LMPlan:
    """The plan of a transformers causal LM (a PEFT-wrapped one: of its base)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    hidden = int(config.hidden_size)
    prefix, blocks = _blocks(base)
    plans = [_block(f"{prefix}.{i}", b, hidden) for i, b in enumerate(blocks)]
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "head_dim", None)
    inner_field = next((f for f in ("intermediate_size", "n_inner", "ffn_dim") if hasattr(config, f)), None)
    fused = len(plans[0].attention_projections) == 2
    notes = []
    if len({p.inner for p in plans}) != 1:
        notes.append("blocks differ in MLP width: pruning keeps the same share of each")
    return LMPlan(hidden, plans, heads, kv_heads, int(head_dim) if head_dim else None, inner_field, fused, notes)


def parameter_count(model: nn.Module, names: list[str]) -> int:
    modules = dict(model.named_modules())
    return sum(p.numel() for n in names for p in modules[n].parameters(recurse=False))
