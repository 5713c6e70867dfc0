"""Method registry: name -> Method, per task, in table order. The single source of the method list, their
labels, their order in tables, and what each does (surgery, objective).

A named method is one `register(Method(...))` line here; a new surgery or objective is one file and one
registration line in its own registry (methods/surgery.py and methods/causal_lm/surgery.py, objectives/).
Any other point of the grid is spelled OBJECTIVE@SURGERY, e.g. "salun@prune+lora" or "npo@prune+lora", and
labelled the same way on both tasks ("SalUn@PruneLoRA", "NPO@PruneLoRA").
"""
from __future__ import annotations

from ..errors import UserError
from ..objectives import OBJECTIVES, get_objective
from ..registry import CAUSAL_LM, IMAGE, Registry
from .base import MethodContext, Prepared, objective_args, resolve_recipe
from .causal_lm import surgery as _causal_lm_surgeries  # noqa: F401 - registers the causal-LM task's surgeries
from .logit_mask import LogitMask, LogitMasked
from .method import Method
from .surgery import SURGERIES, get_surgery

METHODS: Registry[Method] = Registry("method")
GRID_SEPARATOR = "@"


def register(method: Method) -> Method:
    """Add a method to its task (tables show it after those registered before it); its surgery and objective
    must be registered for that task."""
    get_surgery(method.surgery, method.task)
    get_objective(method.objective, method.task)
    return METHODS.register(method, task=method.task)


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

for _method in (
    Method("retrain", "Retrain", "reinit", "retain", exact=True, paper=True, task=CAUSAL_LM),
    Method("finetune", "Finetune", "none", "retain", paper=True, task=CAUSAL_LM),
    Method("prune-finetune", "Prune+Finetune", "prune", "retain", paper=True, task=CAUSAL_LM),
    Method("lora", "LoRA", "lora", "retain", paper=True, task=CAUSAL_LM),
    Method("prunelora", "PruneLoRA", "prune+lora", "retain", paper=True, task=CAUSAL_LM),
    Method("ga", "GA", "none", "ga", task=CAUSAL_LM),
    Method("graddiff", "GradDiff", "none", "graddiff", task=CAUSAL_LM),
    Method("npo", "NPO", "none", "npo", task=CAUSAL_LM),
    Method("simnpo", "SimNPO", "none", "simnpo", task=CAUSAL_LM),
    Method("rmu", "RMU", "none", "rmu", task=CAUSAL_LM),
):
    register(_method)


def grid_name(surgery: str, objective: str, task: str = IMAGE) -> str:
    """The method a surgery and an objective make: a registered name where one matches, else OBJECTIVE@SURGERY."""
    get_surgery(surgery, task)
    get_objective(objective, task)
    for method in METHODS.of(task).values():
        if (method.surgery, method.objective) == (surgery, objective) and type(method) is Method \
                and not method.exact:
            return method.name
    return f"{objective}{GRID_SEPARATOR}{surgery}"


def get_method(name: str, task: str = IMAGE) -> Method:
    """A registered method, or a grid point OBJECTIVE@SURGERY (any registered objective with any surgery but
    Retrain's), of `task`."""
    key = name.strip().lower()
    registered = METHODS.of(task)
    if key in registered:
        return registered[key]
    objective, sep, surgery = key.partition(GRID_SEPARATOR)
    objectives, surgeries = OBJECTIVES.of(task), SURGERIES.of(task)
    if sep and objective in objectives and surgery in surgeries and surgery != "reinit":
        named = grid_name(surgery, objective, task)
        if named != key:  # finetune@none is finetune, prunelora spelt retain@prune+lora is prunelora
            return registered[named]
        return Method(key, f"{objectives[objective].label}{GRID_SEPARATOR}{surgeries[surgery].label}",
                      surgery, objective, task=task)
    cuts = [s for s in surgeries if s != "reinit"]
    if sep and objective in objectives:
        raise UserError(f"unknown surgery '{surgery}' in '{name}' (choose from: {', '.join(cuts)})")
    if sep and surgery in cuts:
        raise UserError(f"unknown objective '{objective}' in '{name}' (choose from: {', '.join(objectives)})")
    raise UserError(f"unknown method '{name}' (choose from: {', '.join(registered)}, a group ("
                    f"{', '.join(GROUPS)}), or OBJECTIVE@SURGERY with an objective of {', '.join(objectives)} and a "
                    f"surgery of {', '.join(cuts)})")


def _table(task: str) -> list[str]:
    """Retrain, then every objective with no surgery and with PruneLoRA's (the causal-LM benchmark's table)."""
    objectives = OBJECTIVES.names(task)
    return ["retrain", *(grid_name(s, o, task) for s in ("none", "prune+lora") for o in objectives)]


def _grid(task: str) -> list[str]:
    """Retrain, then every objective with every surgery."""
    surgeries = [s for s in SURGERIES.names(task) if s != "reinit"]
    return ["retrain", *(grid_name(s, o, task) for s in surgeries for o in OBJECTIVES.names(task))]


# --methods groups, the same on both tasks: (what it holds, how it expands)
GROUPS = {
    "paper": "the paper's paradigms",
    "all": "every registered method",
    "table": "Retrain, then every objective with no surgery and with prune+lora",
    "grid": "Retrain, then every objective with every surgery",
}
ALIASES = {"lm-table": "table"}  # the causal-LM benchmark's earlier name for `table`


def method_names(names: list[str], class_wise: bool = True, task: str = IMAGE) -> list[str]:
    """Expand the groups (GROUPS), each keeping the methods that fit the request, and drop repeats, order kept."""
    out: list[str] = []
    registered = METHODS.of(task)
    for name in names:
        key = ALIASES.get(name.strip().lower(), name.strip().lower())
        if key in GROUPS:
            expanded = {"all": lambda: list(registered), "paper": lambda: paper_methods(task),
                        "table": lambda: _table(task), "grid": lambda: _grid(task)}[key]()
            expanded = [m for m in expanded if class_wise or not get_method(m, task).class_only]
        else:
            expanded = [get_method(key, task).name]
        out += [m for m in expanded if m not in out]
    return out


def paper_methods(task: str = IMAGE) -> list[str]:
    """The paper's paradigms, in table order: the default --methods."""
    return [m.name for m in METHODS.of(task).values() if m.paper]


__all__ = ["GROUPS", "METHODS", "Method", "MethodContext", "Prepared", "get_method", "grid_name", "method_names",
           "objective_args", "paper_methods", "register", "resolve_recipe", "LogitMask", "LogitMasked"]
