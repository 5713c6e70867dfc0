"""The settings a search may try, read from where each is declared: no range is written in the search code.

A method's space is its objective's `space` (Args fields: the objective's own values and its optimiser's),
its surgery's `space` (unlearn.* settings: prune amount and score, LoRA rank and targets, ...), and the task's
unlearning budget (the `search` metadata of unlearn.epochs). A spec is ("log" | "float" | "int", low, high) or
("choice", option, ...). A sampled point is a `Setting`: the method, its method_args and its unlearn.* values,
which a run's configuration takes as they are (`prunelora unlearn ... --set ...` reproduces it).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..methods import Method
from ..methods.surgery import get_surgery

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Param:
    """One searchable setting: where it goes ("method_args" or "unlearn"), its field and its spec."""

    where: str
    name: str
    spec: tuple

    @property
    def key(self) -> str:
        return f"{self.where}.{self.name}"


@dataclass
class Setting:
    """A point of the space: a method with its own values and the unlearning settings it runs with."""

    method: str
    method_args: dict[str, Any] = field(default_factory=dict)
    unlearn: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        return {"method": self.method, **{f"method_args.{self.method}.{k}": v for k, v in self.method_args.items()},
                **{f"unlearn.{k}": v for k, v in self.unlearn.items()}}

    def set_flags(self) -> list[str]:
        """The `--set KEY=VALUE` options that reproduce it."""
        return [f"--set {k}={_shown(v)}" for k, v in self.flat().items() if k != "method"]


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def check_spec(spec: tuple, where: str) -> tuple:
    """A spec as declared, or a ValueError naming `where` (a registry entry's declaration is the developer's)."""
    if not spec or spec[0] not in KINDS:
        raise ValueError(f"{where}: a search spec is ('log'|'float'|'int', low, high) or ('choice', ...), got {spec}")
    if spec[0] == "choice":
        if len(spec) < 2:
            raise ValueError(f"{where}: a choice needs at least one option")
        return spec
    low, high = spec[1], spec[2]
    if not (low < high) or (spec[0] == "log" and low <= 0):
        raise ValueError(f"{where}: a range needs low < high (and low > 0 on a log scale), got {spec}")
    return spec


def epochs_spec(unlearn_cls: type) -> tuple:
    """The unlearning budget's range: the `search` metadata of the task's unlearn.epochs field."""
    found = {f.name: f for f in dataclasses.fields(unlearn_cls)}["epochs"].metadata.get("search")
    return check_spec(found, f"{unlearn_cls.__name__}.epochs")


def space_of(method: Method, unlearn_cls: type) -> list[Param]:
    """Every searchable setting of `method`: its objective's, its surgery's and the unlearning budget."""
    if method.exact:
        return []
    objective = method.objective_class()
    args = {f.name for f in dataclasses.fields(objective.Args)}
    params = []
    for name, spec in objective.space.items():
        if name not in args:
            raise ValueError(f"objective {objective.name}: its space names '{name}', not a field of its Args")
        params.append(Param("method_args", name, check_spec(spec, f"{objective.name}.{name}")))
    config_fields = {f.name for f in dataclasses.fields(unlearn_cls)}
    for name, spec in get_surgery(method.surgery, method.task).space:
        if name not in config_fields:
            raise ValueError(f"surgery {method.surgery}: its space names unlearn.{name}, not a setting of the task")
        params.append(Param("unlearn", name, check_spec(spec, f"{method.surgery}.{name}")))
    params.append(Param("unlearn", "epochs", epochs_spec(unlearn_cls)))
    return params


def suggest(trial, method: Method, params: list[Param], list_epochs: bool) -> Setting:
    """A point of `method`'s space from an Optuna trial (each parameter named method/where.field, so methods
    never share a distribution); list_epochs: the task's unlearn.epochs is a list of budgets (the image task)."""
    setting = Setting(method.name)
    for param in params:
        name = f"{method.name}/{param.key}"
        kind, *rest = param.spec
        if kind == "log":
            value = trial.suggest_float(name, rest[0], rest[1], log=True)
        elif kind == "float":
            value = trial.suggest_float(name, rest[0], rest[1])
        elif kind == "int":
            value = trial.suggest_int(name, rest[0], rest[1])
        else:
            value = trial.suggest_categorical(name, list(rest))
        if param.key == "unlearn.epochs" and list_epochs:
            value = [int(value)]
        (setting.method_args if param.where == "method_args" else setting.unlearn)[param.name] = value
    return setting


def default_setting(method: Method, list_epochs: bool, epochs: int) -> Setting:
    """The method at its published defaults (the first trial of each method: today's answer, beside the search)."""
    return Setting(method.name, {}, {"epochs": [epochs] if list_epochs else epochs})


def check_methods(methods: list[Method], unlearn_cls: type) -> None:
    """Every method searched declares a usable space (a registry entry whose declaration is broken is refused)."""
    for method in methods:
        try:
            space_of(method, unlearn_cls)
        except ValueError as exc:
            raise UserError(f"method {method.name} cannot be searched: {exc}") from None


def grid_size(params: list[Param]) -> float:
    """How many distinct points a space has (inf with a continuous setting): for the report's count."""
    size = 1.0
    for p in params:
        if p.spec[0] == "choice":
            size *= len(p.spec) - 1
        elif p.spec[0] == "int":
            size *= p.spec[2] - p.spec[1] + 1
        else:
            return math.inf
    return size
