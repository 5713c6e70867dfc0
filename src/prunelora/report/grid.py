"""The one model of the report's tables: rows -> columns (label and format from metrics/spec.py) -> cells.

results.md (tables.py) and report.html (html_tables.py) render the same columns and cells; only
the markup differs (HTML adds the best-value marks, a two-row budget header and titles).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..metrics.finite import finite
from ..metrics.spec import CLOSEST, COST, EVIDENCE, FIGURE1, HIGHER, MetricSpec, specs
from .basics import fmt, inconclusive, longest, mark_inconclusive, method_rank


@dataclass(frozen=True)
class Column:
    """One metric, at one budget (Figure 1's per-budget groups) or at each method's longest budget."""

    spec: MetricSpec
    budget: int | None = None

    @property
    def id(self) -> str:
        return f"{self.spec.key}@{self.budget}" if self.budget is not None else self.spec.key

    @property
    def header(self) -> str:
        """The flat header (results.md): 'UA 2 ep'."""
        return f"{self.spec.label} {self.budget} ep" if self.budget is not None else self.spec.label


@dataclass(frozen=True)
class Cell:
    """What a cell shows: the value, its spread, and what the reader must know about it."""

    mean: str  # '-' when not measured
    std: str = ""  # the ± part, '' when none
    inconclusive: bool = False  # an MIA value from an attacker at chance: no evidence, never best
    best: bool = False
    title: str | None = None  # why (a verdict's reasons)

    @property
    def text(self) -> str:
        """The cell as plain text: '12.34 ± 0.56', 'inconclusive (50.00 ± 0.00)'."""
        plain = self.mean + (f" ± {self.std}" if self.std else "")
        return mark_inconclusive(plain) if self.inconclusive else plain


def cell(row: dict | None, spec: MetricSpec, *, spread: bool = True, digits: int | None = None,
         grouped: bool = False) -> Cell:
    """A row's value of a metric, formatted by its spec ('-' for a row that is not there); `digits` overrides
    the spec's decimals (an adaptive column), `grouped` writes whole numbers with thousands separators."""
    if row is None:
        return Cell("-")
    value = row.get(spec.key)
    if spec.text:
        detail = row.get(spec.detail) if spec.detail else None
        return Cell(str(value or "-") + (f" ({detail})" if detail else ""),
                    title=(row.get(spec.note) or None) if spec.note else None)
    if spec.integer:
        return Cell(f"{int(round(value)):,}" if grouped and finite(value) else fmt(int(value) if value is not None else None))
    digits = spec.digits if digits is None else digits
    mean, _, std = fmt(value, digits, row.get(f"{spec.key}_std") if spread else None).partition(" ± ")
    if spec.censored and row.get(spec.censored) is False and mean != "-":
        mean = f"> {mean}"
    return Cell(mean, std, inconclusive=inconclusive(row, spec.key) and mean != "-")


# -- Figure 1: the paper's metrics per budget, then cost at the longest budget ------------------------------
def figure1_columns(budgets: list[int | None]) -> list[Column]:
    """UA, MIA-Efficacy, RA, TA and Gap at each budget, then RTE, total, cost vs Retrain, memory, parameters."""
    return [Column(s, b) for s in specs(FIGURE1) for b in budgets] + [Column(s) for s in specs(COST)]


def figure1_rows(rows: list[dict], columns: list[Column], roomy: bool = False) -> list[tuple[str, list[Cell]]]:
    """One model's methods (in registry order) and their cells, the best of each column marked.

    roomy (report.html): adaptive columns get decimals by the column's magnitude, whole numbers separators.

    A budget column shows the method's row at that budget, else its budget-less row (Original and Retrain
    repeat); other columns its longest budget.
    """
    methods = sorted(dict.fromkeys(r["method"] for r in rows), key=method_rank)
    model = rows[0]["model"] if rows else ""
    shown: dict[str, dict[str, dict | None]] = {}
    for col in columns:
        shown[col.id] = {m: (at_budget(rows, m, col.budget) if col.spec.section == FIGURE1
                             else longest(rows, model, m)) for m in methods}
    digits = {col.id: column_digits(col.spec, [r.get(col.spec.key) for r in shown[col.id].values() if r], roomy)
              for col in columns}
    best = {col.id: best_methods([r for r in shown[col.id].values() if r], col.spec, digits[col.id])
            for col in columns}
    out = []
    for method in methods:
        cells = []
        for col in columns:
            c = cell(shown[col.id][method], col.spec, spread=not col.spec.integer, digits=digits[col.id], grouped=roomy)
            cells.append(Cell(c.mean, c.std, c.inconclusive, method in best[col.id], c.title))
        out.append((method, cells))
    return out


def column_digits(spec: MetricSpec, values: list, roomy: bool) -> int:
    """Decimals a column is shown (and compared) with: the spec's, or by magnitude for an adaptive one."""
    if not (roomy and spec.adaptive):
        return spec.digits
    top = max((abs(v) for v in values if finite(v)), default=0.0)
    return 3 if top < 1 else 2 if top < 10 else 1


def at_budget(rows: list[dict], method: str, budget: int | None) -> dict | None:
    """The row shown in a budget column: the method's row at that budget, else its budget-less row."""
    mine = {r["epochs"]: r for r in rows if r["method"] == method}
    return mine.get(budget, mine.get(None))


def best_methods(rows: list[dict], spec: MetricSpec, digits: int | None = None) -> set[str]:
    """Methods holding the best value of a column, compared at the shown precision.

    CLOSEST (UA, MIA-Efficacy, RA, TA): closest to the Retrain row among `rows`, since exact unlearning,
    not the highest accuracy, is the goal; without a Retrain row nothing is marked. LOWER: lowest. Original
    never competes; Retrain does not compete on columns measured against it; an MIA value whose attacker
    was not above chance never competes. A column where every candidate ties (or fewer than two compete)
    marks nothing.
    """
    if spec.best is None:
        return set()
    digits = spec.digits if digits is None else digits
    scores = _distances(rows, spec, digits) if spec.best == CLOSEST else _candidates(rows, spec, digits)
    if spec.best == HIGHER:
        scores = {m: -v for m, v in scores.items()}
    if len(scores) < 2 or len(set(scores.values())) == 1:
        return set()
    top = min(scores.values())
    return {m for m, v in scores.items() if v == top}


def _candidates(rows: list[dict], spec: MetricSpec, digits: int) -> dict[str, float]:
    """The competing methods' values of a column, rounded as shown."""
    values = {}
    for r in rows:
        if r["method"] == "original" or (r["method"] == "retrain" and (spec.best == CLOSEST or spec.against_retrain)):
            continue
        if finite(r.get(spec.key)) and not inconclusive(r, spec.key):
            values[r["method"]] = round(float(r[spec.key]), digits)
    return values


def _distances(rows: list[dict], spec: MetricSpec, digits: int) -> dict[str, float]:
    """|value - Retrain's value| per competing method, at the shown precision; empty without a usable reference."""
    ref = next((r for r in rows if r["method"] == "retrain"), None)
    if ref is None or not finite(ref.get(spec.key)) or inconclusive(ref, spec.key):
        return {}
    target = round(float(ref[spec.key]), digits)
    return {m: round(abs(v - target), digits) for m, v in _candidates(rows, spec, digits).items()}


# -- the evidence beyond the outputs, at each method's longest budget ------------------------------------
def evidence_columns(rows: list[dict]) -> list[Column]:
    """The evidence columns some row carries; none unless one of them is more than ToW (which every gap has)."""
    columns = [Column(s) for s in specs(EVIDENCE) if any(r.get(s.key) is not None for r in rows)]
    return columns if any(c.spec.key != "tow" for c in columns) else []
