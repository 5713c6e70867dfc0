"""LayerPlan: which layers each unlearning method acts on, as regexes over module names (PEFT-style)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerPlan:
    """Which layers the unlearning methods touch: regexes over module names (full match, as PEFT)."""

    prune_layers: str  # structured L2 pruning of output channels
    lora_layers: str  # LoRA adapters
    train_modules: tuple[str, ...] = ()  # trained in full beside the adapters (the head)
    head: str = "fc"  # never pruned away in remove mode
    lora_r: int = 8
    lora_dropout: float = 0.0
    family: str = ""  # resnet | vit: which pre-training recipe Retrain uses ("" = the registry's)

    def prefixed(self, prefix: str) -> LayerPlan:
        """The same layers seen from a wrapper that holds the model under `prefix` (e.g. "inner.")."""
        def regex(pattern: str) -> str:
            return f"{re.escape(prefix)}(?:{pattern})"

        return dataclasses.replace(self, prune_layers=regex(self.prune_layers), lora_layers=regex(self.lora_layers),
                                   train_modules=tuple(prefix + m for m in self.train_modules),
                                   head=prefix + self.head)
