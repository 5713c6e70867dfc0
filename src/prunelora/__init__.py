"""prunelora: machine unlearning for image classifiers, PruneLoRA and the paradigms it is compared with.

    import prunelora
    result = prunelora.unlearn(model, retain, forget, method="prunelora", epochs=5)
    print(result)  # per-epoch forget accuracy, and whether the class was forgotten
    print(prunelora.evaluate(result.model, splits))
"""
from __future__ import annotations

from .api import UnlearningWarning, UnlearnResult, evaluate, load, plan, unlearn
from .config import RunConfig
from .data import ImageSet, Splits, class_splits, load_dataset, split_by_ids
from .errors import UserError
from .methods import METHODS, register
from .models import REGISTRY as MODELS
from .models import LayerPlan
from .objectives import OBJECTIVES
from .version import __version__

__all__ = ["__version__", "ImageSet", "LayerPlan", "METHODS", "MODELS", "OBJECTIVES", "RunConfig", "Splits", "UnlearnResult",
           "UnlearningWarning", "UserError", "class_splits", "evaluate", "load", "load_dataset", "plan", "register",
           "split_by_ids", "unlearn"]
