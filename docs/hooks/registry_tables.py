"""MkDocs hook: the methods', surgeries', objectives' and metrics' tables, rendered from the registries at build time.

A page holds markers such as `<!-- methods:image-classification -->`, `<!-- objectives:causal-lm -->`,
`<!-- surgeries:causal-lm -->` or `<!-- metrics:causal-lm -->`; this hook replaces each with a Markdown table
of what is registered for that task: each method's surgery and objective, each objective's defaults (its
`Args` dataclass, the values a run uses unless `--set method_args.NAME.FIELD=...` says otherwise) and the
first sentence of its docstring (which names its reference), each metric's label, unit and reading. A
default changed in the code changes the page.
"""
from __future__ import annotations

import dataclasses
import inspect
import re

MARKER = re.compile(r"<!-- (methods|objectives|surgeries|metrics):([a-z-]+) -->")
RECIPE = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "augment", "nesterov")


def _first_sentence(text: str | None) -> str:
    first = " ".join((text or "").split("\n\n")[0].split())
    return re.split(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z(])", first)[0].rstrip(".")


def _value(value) -> str:
    if value is None:
        return "derived (see its docs)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _defaults(cls) -> str:
    """An objective's defaults: its recipe values that differ from the run's, then its own values."""
    args = cls.Args()
    shown = []
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if f.name in RECIPE and (value is None or (f.name == "nesterov" and value is False)):
            continue
        shown.append(f"{f.name} {_value(value)}")
    return ", ".join(shown) or "the run's unlearning settings"


def methods_table(task: str) -> str:
    from prunelora.methods import METHODS
    from prunelora.methods.surgery import SURGERIES
    from prunelora.objectives import OBJECTIVES

    surgeries, objectives = SURGERIES.of(task), OBJECTIVES.of(task)
    lines = ["| method | label | surgery | objective | paper's paradigm |", "|---|---|---|---|---|"]
    for method in METHODS.of(task).values():
        surgery = surgeries.get(method.surgery)
        objective = objectives.get(method.objective)
        lines.append(f"| `{method.name}` | {method.label} | `{method.surgery}` ({surgery.label if surgery else '-'}) "
                     f"| `{method.objective}` ({objective.label if objective else '-'}) | "
                     f"{'yes' if method.paper else ''} |")
    return "\n".join(lines)


def objectives_table(task: str) -> str:
    from prunelora.objectives import OBJECTIVES

    lines = ["| objective | label | what it is | defaults | follows |", "|---|---|---|---|---|"]
    for name, cls in OBJECTIVES.of(task).items():
        doc = re.split(r", as |\. Follows", _first_sentence(inspect.getmodule(cls).__doc__ or cls.__doc__))[0]
        lines.append(f"| `{name}` | {cls.label} | {doc} | {_defaults(cls)} | {cls.reference} |")
    return "\n".join(lines)


def surgeries_table(task: str) -> str:
    from prunelora.methods.surgery import SURGERIES

    lines = ["| surgery | label | prunes | adapts (LoRA) | trains every weight | starts afresh |",
             "|---|---|---|---|---|---|"]
    for name, s in SURGERIES.of(task).items():
        marks = ["yes" if flag else "" for flag in (s.prunes, s.adapts, s.trains_all, s.reinitializes)]
        lines.append(f"| `{name}` | {s.label} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def metrics_table(task: str) -> str:
    from prunelora.metrics.causal_lm import specs as _causal_lm  # noqa: F401 - registers the task's specs
    from prunelora.metrics.spec import specs

    lines = ["| key | label | unit | best | shown in | what it is |", "|---|---|---|---|---|---|"]
    for spec in specs(task=task):
        lines.append(f"| `{spec.key}` | {spec.label} | {spec.unit or '-'} | {spec.best or '-'} | {spec.section} | "
                     f"{spec.description or ''} |")
    return "\n".join(lines)


TABLES = {"methods": methods_table, "objectives": objectives_table, "surgeries": surgeries_table,
          "metrics": metrics_table}


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    return MARKER.sub(lambda m: TABLES[m.group(1)](m.group(2)), markdown)
