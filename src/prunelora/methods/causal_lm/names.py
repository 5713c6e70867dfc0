"""Method names of the causal-LM task: an objective with a surgery (`npo@prune+lora`), Retrain, and groups.

finetune is the retain objective with no surgery; prunelora is the retain objective with prune+lora (the
paper's PruneLoRA); OBJECTIVE alone is OBJECTIVE@none. Groups: `lm-table` (Retrain, then every objective
with no surgery and with prune+lora: the issue's table) and `all` (every objective with every surgery).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from ...objectives.causal_lm import LM_OBJECTIVES, get_lm_objective
from .surgery import SURGERIES

ALIASES = {"finetune": ("retain", "none"), "prunelora": ("retain", "prune+lora")}


@dataclass(frozen=True)
class LMMethod:
    name: str
    objective: str | None  # None: Retrain
    surgery: str

    @property
    def label(self) -> str:
        if self.objective is None:
            return "Retrain"
        label = get_lm_objective(self.objective).label
        return label if self.surgery == "none" else f"{label} + {self.surgery}"


def method(name: str) -> LMMethod:
    name = name.strip().lower()
    if name == "retrain":
        return LMMethod("retrain", None, "none")
    objective, _, surgery = name.partition("@")
    if objective in ALIASES and not surgery:
        objective, surgery = ALIASES[objective]
    objective, surgery = ("retain" if objective == "finetune" else objective), surgery or "none"
    if objective not in LM_OBJECTIVES:
        raise UserError(f"unknown method '{name}' (choose retrain, finetune, prunelora, "
                        f"{', '.join(o for o in LM_OBJECTIVES if o != 'retain')}, or OBJECTIVE@SURGERY with a "
                        f"surgery of {', '.join(SURGERIES)})")
    if surgery not in SURGERIES:
        raise UserError(f"unknown surgery '{surgery}' in '{name}' (choose {', '.join(SURGERIES)})")
    return LMMethod(canonical(objective, surgery), objective, surgery)


def canonical(objective: str, surgery: str) -> str:
    for alias, pair in ALIASES.items():
        if pair == (objective, surgery):
            return alias
    return objective if surgery == "none" else f"{objective}@{surgery}"


def expand(names: list[str]) -> list[LMMethod]:
    """The methods a list names, groups expanded, each once, Retrain first (the others compare with it)."""
    out: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key == "lm-table":
            out += ["retrain"] + [canonical(o, s) for s in ("none", "prune+lora") for o in LM_OBJECTIVES]
        elif key == "all":
            out += ["retrain"] + [canonical(o, s) for s in SURGERIES for o in LM_OBJECTIVES]
        else:
            out.append(method(key).name)
    if not out:
        raise UserError("--methods names no method")
    unique = list(dict.fromkeys(out))
    unique.sort(key=lambda n: n != "retrain")
    return [method(n) for n in unique]
