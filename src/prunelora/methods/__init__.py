"""Method registry: name -> Method, in table order. The single source of the method list, their
labels, their order in tables, and what each does (surgery, objective).

A named method is one line here; a new surgery or objective is one file and one line in its own
registry (methods/surgery.py, objectives/__init__.py). Any other point of the grid is spelled
OBJECTIVE@SURGERY, e.g. "salun@prune+lora".
"""
from __future__ import annotations

from ..errors import UserError
from ..objectives import OBJECTIVES, get_objective
from .base import MethodContext, Prepared, objective_args, resolve_recipe
from .logit_mask import LogitMask, LogitMasked
from .method import Method
from .surgery import SURGERIES, get_surgery

METHODS: dict[str, Method] = {}
GRID_SEPARATOR = "@"


def register(method: Method) -> Method:
    """Add a method (tables show it after those registered before it)."""
    if GRID_SEPARATOR in method.name:
        raise ValueError(f"a registered method's name cannot hold '{GRID_SEPARATOR}': {method.name}")
    METHODS[method.name] = method
    return method


for _method in (
    Method("retrain", "Retrain", "reinit", "retain", exact=True, paper=True),
    Method("finetune", "Finetune", "none", "retain", paper=True),
    Method("prune-finetune", "Prune+Finetune", "prune", "retain", paper=True),
    Method("lora", "LoRA", "lora", "retain", paper=True),
    Method("prunelora", "PruneLoRA", "prune+lora", "retain", paper=True),
    Method("ga", "GA", "none", "ga"),
    Method("neggrad+", "NegGrad+", "none", "neggrad+"),
    Method("rl", "RL", "none", "rl"),
    Method("ft-l1", "l1-sparse", "none", "l1-sparse"),
    Method("salun", "SalUn", "none", "salun"),
    Method("scrub", "SCRUB", "none", "scrub"),
    LogitMask(),
):
    register(_method)


def grid_name(surgery: str, objective: str) -> str:
    """The method a surgery and an objective make: a registered name where one matches, else OBJECTIVE@SURGERY."""
    get_surgery(surgery)
    get_objective(objective)
    for method in METHODS.values():
        if (method.surgery, method.objective) == (surgery, objective) and type(method) is Method \
                and not method.exact:
            return method.name
    return f"{objective}{GRID_SEPARATOR}{surgery}"


def get_method(name: str) -> Method:
    """A registered method, or a grid point OBJECTIVE@SURGERY."""
    if name in METHODS:
        return METHODS[name]
    objective, sep, surgery = name.partition(GRID_SEPARATOR)
    if sep and objective in OBJECTIVES and surgery in SURGERIES and surgery != "reinit":
        return Method(name, f"{OBJECTIVES[objective].label}{GRID_SEPARATOR}{SURGERIES[surgery].label}",
                      surgery, objective)
    raise UserError(f"unknown method '{name}' (choose from: {', '.join(METHODS)}, all, or OBJECTIVE@SURGERY "
                    f"with an objective of {', '.join(OBJECTIVES)} and a surgery of "
                    f"{', '.join(s for s in SURGERIES if s != 'reinit')})")


def method_names(names: list[str], class_wise: bool = True) -> list[str]:
    """Expand the groups "all" (every registered method) and "paper" (the paper's paradigms, the default), each
    keeping the methods that fit the request, and drop repeats, order kept."""
    groups = {"all": lambda m: True, "paper": lambda m: m.paper}
    out: list[str] = []
    for name in names:
        if name in groups:
            expanded = [m.name for m in METHODS.values() if groups[name](m) and (class_wise or not m.class_only)]
        else:
            expanded = [name]
        out += [m for m in expanded if m not in out]
    return out


def paper_methods() -> list[str]:
    """The paper's paradigms, in table order: the default --methods."""
    return [m.name for m in METHODS.values() if m.paper]


__all__ = ["METHODS", "Method", "MethodContext", "Prepared", "get_method", "grid_name", "method_names",
           "objective_args", "paper_methods", "register", "resolve_recipe", "LogitMask", "LogitMasked"]
