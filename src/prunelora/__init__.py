"""prunelora: machine unlearning for image classifiers and causal language models, PruneLoRA and the field's
methods, with the evidence that the data is gone.

    import prunelora
    result = prunelora.unlearn(model, retain, forget, method="prunelora", epochs=5)
    print(result)  # per-epoch forget accuracy, and whether the class was forgotten
    print(prunelora.evaluate(result.model, splits))

    result = prunelora.unlearn(causal_lm, "train.jsonl", forget=ids, tokenizer=tokenizer, method="npo@prune+lora")
"""
from __future__ import annotations

from .api import UnlearningWarning, UnlearnResult, evaluate, load, plan, unlearn
from .api_causal_lm import LMResult
from .config import RunConfig
from .data import ImageSet, Splits, class_splits, load_dataset, split_by_ids
from .errors import UserError
from .methods import METHODS, register
from .methods.surgery import SURGERIES, register_surgery
from .models import REGISTRY as MODELS
from .models import LayerPlan
from .objectives import OBJECTIVES, register_objective
from .registry import CAUSAL_LM, IMAGE, TASKS
from .search.api import SearchResult, search
from .version import __version__

__all__ = ["CAUSAL_LM", "IMAGE", "LMResult", "METHODS", "MODELS", "OBJECTIVES", "SURGERIES", "SearchResult", "TASKS", "ImageSet",
           "LayerPlan", "RunConfig", "Splits", "UnlearnResult", "UnlearningWarning", "UserError", "__version__",
           "class_splits", "evaluate", "load", "load_dataset", "plan", "register", "register_objective",
           "register_surgery", "search", "split_by_ids", "unlearn"]
