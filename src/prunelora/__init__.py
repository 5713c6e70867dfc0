"""prunelora: machine unlearning for image classifiers, PruneLoRA and the paradigms it is compared with.

    import prunelora
    result = prunelora.unlearn(model, retain, forget, method="prunelora", epochs=5)
    print(result)  # per-epoch forget accuracy, and whether the class was forgotten
    print(prunelora.evaluate(result.model, splits))
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import UnlearningWarning, UnlearnResult, evaluate, load, plan, unlearn  # noqa: E402
from .config import RunConfig  # noqa: E402
from .data import ImageSet, Splits, class_splits, load_dataset  # noqa: E402
from .errors import UserError  # noqa: E402
from .methods import METHODS, register  # noqa: E402
from .models import REGISTRY as MODELS  # noqa: E402
from .models import LayerPlan  # noqa: E402
from .objectives import OBJECTIVES  # noqa: E402

__all__ = ["ImageSet", "LayerPlan", "METHODS", "MODELS", "OBJECTIVES", "RunConfig", "Splits", "UnlearnResult",
           "UnlearningWarning", "UserError", "class_splits", "evaluate", "load", "load_dataset", "plan", "register", "unlearn"]
