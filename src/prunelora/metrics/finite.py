"""No NaN or infinity reaches a metric: scikit-learn raises a traceback on them, numpy averages them into NaN.

A model whose outputs are not finite (weights that diverged, an input normalisation that divides by
zero) is refused where its outputs enter the metrics, with the split named, instead.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..errors import UserError

HINT = ("check the input normalisation (--mean/--std: no zero std) and the model's weights (a model trained "
        "with too high a learning rate diverges: lower --lr)")

def finite(*values: object) -> bool:
    """Whether every value is a real number (not a flag), neither NaN nor infinite: what a table averages and a
    verdict reads; None, a word or NaN is "not measured"."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the sample standard deviation (ddof=1, 0 for one value) of the finite values: the spread
    between seeds, on every table of both tasks (with a handful of seeds the population std would understate
    it); (None, None) when no value is finite."""
    kept = [float(v) for v in values if finite(v)]
    if not kept:
        return None, None
    return float(np.mean(kept)), float(np.std(kept, ddof=1)) if len(kept) > 1 else 0.0


LOGIT_FLOOR = 1000.0  # below a row's top logit: exp(-1000) is 0 in float64, so probabilities are unchanged


def floor_logits(logits: np.ndarray) -> np.ndarray:
    """Logits with -inf (a masked class: logit-mask) raised to the row's top minus 1000.

    Its probability stays exactly 0 in float64, while every log and product of the features stays
    finite (0 * log 0 would be NaN, a loss of +inf would break the scalers).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.size == 0 or not np.isneginf(z).any():
        return z
    top = np.where(np.isfinite(z), z, -np.inf).max(axis=1, keepdims=True)
    return np.where(np.isneginf(z), top - LOGIT_FLOOR, z)


def require_finite(array, what: str) -> np.ndarray:
    """`array` as numpy when every value is finite; else a UserError naming `what` ("the model's outputs on
    forget_train") and the likely causes."""
    values = np.asarray(array)
    if values.size and values.dtype.kind in "fc":
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise UserError(f"{what} are not finite ({bad} of {values.size} values are NaN or infinite): {HINT}")
    return values


def require_finite_logits(logits: Mapping[str, np.ndarray]) -> None:
    """Every split's logits finite, -inf aside (a masked class: logit-mask; floor_logits keeps it out of
    the features); a row of only -inf is refused."""
    for split, values in logits.items():
        require_finite(floor_logits(values), f"the model's outputs on {split}")
