"""How every report reads rows: number format, method order and label, which rows a table shows, and
which values are no evidence (an MIA whose attacker was at chance). Shared by results.md and report.html."""
from __future__ import annotations

import math
from typing import Any

from ..errors import UserError
from ..methods import METHODS, get_method
from ..metrics.attacks import ATTACKS, attack_keys
from ..registry import IMAGE

INCONCLUSIVE = "inconclusive"


def fmt(value: Any, digits: int = 2, std: Any = None) -> str:
    """'12.34 ± 0.56'; '-' for a value not measured (None or NaN); an int as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text



def method_rank(method: str) -> int:
    """The original first, then registered methods in registry order; anything else after them (stably)."""
    order = ["original", *METHODS.names(IMAGE)]
    return order.index(method) if method in order else len(order)


def method_label(method: str) -> str:
    """The registry's label ("PruneLoRA", "SalUn@PruneLoRA"); a name the registry does not know stays as it is."""
    if method == "original":
        return "Original"
    try:
        return get_method(method).label
    except UserError:
        return method


def requests_of_rows(rows: list[dict]) -> list[Any]:
    """The requests the rows measure, in order ([None] for rows written before requests existed)."""
    return sorted({r.get("request") for r in rows}, key=lambda k: -1 if k is None else k) or [None]


def request_heading(rows: list[dict], request: Any) -> str:
    """'Request 2 of 3: class 5 (5)' for sequences; '' when there is a single request."""
    requests = requests_of_rows(rows)
    if len(requests) < 2:
        return ""
    desc = next((r.get("request_desc") for r in rows if r.get("request") == request and r.get("request_desc")), "")
    return f"Request {request} of {len(requests)}" + (f": {desc}" if desc else "") + " (cumulative)"


def display_rows(rows: list[dict]) -> list[dict]:
    """The rows a table shows: aggregated rows when several seeds ran, else the single seed's rows."""
    aggregated = [r for r in rows if r.get("seed", 0) is None]
    return aggregated or rows


def budgets_of(rows: list[dict]) -> list[int]:
    """The unlearning budgets (epochs) the rows ran, ascending."""
    return sorted({r["epochs"] for r in rows if r["epochs"] is not None})


def conclusive_key(efficacy_key: str) -> str:
    """The flag saying whether an efficacy's attacker beat chance (the default attack has its own name)."""
    for name in ATTACKS:
        keys = attack_keys(name)
        if keys.efficacy == efficacy_key:
            return keys.conclusive
    return f"{efficacy_key}_conclusive"


def inconclusive(row: dict | None, key: str) -> bool:
    """An MIA efficacy whose attacker was not above chance; rows that do not say (old files) are taken as they are."""
    return bool(row) and key.startswith("mia_") and row.get(conclusive_key(key)) is False


def mark_inconclusive(text: str) -> str:
    """'100.00 ± 1.00' -> 'inconclusive (100.00 ± 1.00)': never a bare 0 or 100 from an attacker at chance."""
    return f"{INCONCLUSIVE} ({text})"


def longest(rows: list[dict], model: str, method: str) -> dict | None:
    """The row of a method at its longest budget (original, Retrain, logit-mask: their only row)."""
    mine = [r for r in rows if r["model"] == model and r["method"] == method]
    return max(mine, key=lambda r: -1 if r["epochs"] is None else r["epochs"]) if mine else None


def models_of(rows: list[dict]) -> list[str]:
    """The rows' models, in order of first appearance."""
    return list(dict.fromkeys(r["model"] for r in rows))


def methods_of(rows: list[dict]) -> list[str]:
    """The rows' methods, in registry order."""
    return sorted(dict.fromkeys(r["method"] for r in rows), key=method_rank)
