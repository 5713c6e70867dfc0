"""What an evidence entry is: the metrics it declares and the function that computes them, for one task.

An image entry reads what it needs from one `EvidenceInputs` (the split logits and labels, the seed and the
evidence settings; for model-level evidence also the model, its splits, its captured features and the
original it started from); a causal-LM entry from `TextEvidenceInputs` (the per-example measures of each
split). metrics/registry.py holds the entries of both tasks; metrics/evaluate.py runs the image task's in
order, metrics/causal_lm/measure.py the causal-LM task's.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import EVAL_BATCH
from ..registry import IMAGE
from .spec import MIA_MAX_PER_SIDE, MetricSpec

if TYPE_CHECKING:
    from torch import nn

    from ..config import EvidenceConfig
    from ..data import Splits


@dataclass(frozen=True)
class EvidenceInputs:
    """Everything an entry may read; model-level fields are None where only logits are measured."""

    logits: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    seed: int
    evidence: EvidenceConfig
    mia_cap: int = MIA_MAX_PER_SIDE
    model: nn.Module | None = None
    splits: Splits | None = None
    original: nn.Module | None = None  # the model before unlearning (relearn time starts from it)
    batch_size: int = EVAL_BATCH
    features: Mapping[str, np.ndarray | None] | None = None  # penultimate features captured with the logits


@dataclass(frozen=True)
class TextEvidenceInputs:
    """What a causal-LM entry reads: every per-example measure of each split (metrics/causal_lm/measure.py), and
    the figures the entries before it wrote (model utility reads the retain side's)."""

    per_split: Mapping[str, Mapping[str, list]]
    so_far: Mapping[str, float]


@dataclass(frozen=True)
class Evidence:
    """One kind of evidence: `compute(inputs)` returns its row keys (those of `specs`, and their companions)."""

    name: str
    compute: Callable[[Any], dict[str, Any]]  # EvidenceInputs (image) or TextEvidenceInputs (causal LM)
    specs: tuple[MetricSpec, ...] = ()  # the metrics it declares (built-ins: declared in spec.py, named here)
    model_level: bool = False  # needs the model (model_evidence), not only its logits (metrics_from_logits)
    enabled: Callable[[EvidenceInputs], bool] = field(default=lambda inputs: True)
    timing: str | None = None  # the part of exp.timings its wall seconds are added to
    one_blas_thread: bool = True  # small scikit-learn fits: one BLAS thread each (metrics/blas.py)
    prefixes: tuple[str, ...] = ()  # the row keys it writes, as prefixes (default: its specs' keys)
    task: str = IMAGE  # image entries read EvidenceInputs; causal-LM entries TextEvidenceInputs

    @property
    def written(self) -> tuple[str, ...]:
        """Prefixes of the keys it writes: a re-evaluated row drops them before the new values go in."""
        return self.prefixes or tuple(s.key for s in self.specs)
