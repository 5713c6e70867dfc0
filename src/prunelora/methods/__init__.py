"""Method registry: name -> Method. Adding a method is one file and one line here."""
from __future__ import annotations

from ..errors import UserError
from .base import Method, MethodContext, Prepared, resolve_recipe, unlearn_optim
from .finetune import Finetune
from .lora_method import LoRA
from .prune_finetune import PruneFinetune
from .prunelora import PruneLoRA
from .retrain import Retrain

METHODS: dict[str, Method] = {m.name: m for m in (Retrain(), Finetune(), PruneFinetune(), LoRA(), PruneLoRA())}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method '{name}' (choose from: {', '.join(METHODS)})")
    return METHODS[name]


__all__ = ["METHODS", "Method", "MethodContext", "Prepared", "get_method", "resolve_recipe", "unlearn_optim"]
