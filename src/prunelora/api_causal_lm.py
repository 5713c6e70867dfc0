"""The causal-LM task from Python: a model and its tokenizer in, the same Hugging Face class out.

    from prunelora.api_causal_lm import unlearn_lm
    result = unlearn_lm(model, tokenizer, "train.jsonl", ["p0003-birth_city", ...], method="npo@prune+lora",
                        holdout="holdout.jsonl")
    result.model.save_pretrained("unlearned")        # a transformers model of the input's class
    result.measures["forget_rouge_l"], result.verdict

Retrain needs the initialisation and a recipe to train from scratch: use `prunelora reproduce --task causal-lm`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .config.causal_lm import LMConfig, resolve
from .data.text.examples import Example, from_rows, read_examples, split
from .data.text.tokens import encode
from .driver.preflight import select_device
from .errors import UserError
from .methods.causal_lm.names import method
from .metrics.causal_lm import measure as evaluate
from .metrics.causal_lm import verdicts
from .models.causal_lm.loading import weight_dtype
from .runner.causal_lm import unlearn_with


@dataclass
class LMResult:
    """What unlearn_lm gives back."""

    model: nn.Module  # the unlearned model, adapters merged: the input's class
    adapter: nn.Module | None  # the PEFT model (LoRA methods), for save_pretrained of the adapter alone
    method: str
    measures: dict[str, float]  # forget/retain/holdout probability, ROUGE-L, truth ratio, utility, attack AUCs
    cost: dict[str, Any]
    verdict: str  # without Retrain: forget vs holdout (see lm.verdicts)
    reasons: list[str] = field(default_factory=list)
    per_example: dict[str, Any] = field(default_factory=dict)


def _examples(data: str | Path | list[dict], config: LMConfig, kind: str | None = None) -> tuple[str, list[Example]]:
    if isinstance(data, (str, Path)):
        return read_examples(data, config.data, kind)
    if not data:
        raise UserError("no examples given")
    return from_rows(list(data), config.data)


def unlearn_lm(model: nn.Module, tokenizer, data: str | Path | list[dict], forget: list[str],
               method_name: str = "npo@prune+lora", *, holdout: str | Path | list[dict] | None = None,
               seed: int = 0, device: str = "auto", progress: bool = False, **settings: Any) -> LMResult:
    """Unlearn the examples `forget` (ids) of `data` (a .jsonl path or rows) from `model` (left untouched).

    settings: any LMConfig field by dotted name, e.g. {"unlearn.epochs": 5, "method_args.npo.beta": 0.2}."""
    from .config.parsing import parse_dotted

    config = resolve(None, parse_dotted([f"{k}={v}" for k, v in settings.items()]))
    chosen = method(method_name)
    if chosen.objective is None:
        raise UserError("Retrain trains from scratch: run `prunelora reproduce --task causal-lm` (or unlearn "
                        "--methods retrain) for it")
    kind, train = _examples(data, config)
    held = _examples(holdout, config, kind)[1] if holdout is not None else []
    known = {ex.id for ex in train}
    missing = [i for i in forget if i not in known]
    if missing or not forget:
        raise UserError(f"forget: {len(missing)} ids match no example (first: {', '.join(missing[:3])})" if missing
                        else "forget names no example")
    splits = split(kind, train, list(forget), held, f"{len(forget)} named examples")
    target = select_device(device)
    original = copy.deepcopy(model).to(target, weight_dtype(config.precision, target))
    retain = encode(tokenizer, splits.retain, config.data.max_length, target)
    forget_set = encode(tokenizer, splits.forget, config.data.max_length, target)
    trained, operated, cost = unlearn_with(chosen, original, retain, forget_set, config, seed, progress)
    measured = evaluate.measure(trained, tokenizer, {"forget": splits.forget, "retain": splits.retain[:200],
                                                     "holdout": held}, config.data.max_length, target)
    verdict, reasons = verdicts.without_retrain(measured["summary"], len(splits.forget), len(held))
    return LMResult(operated.merged() if operated else trained, operated.model if operated and operated.adapted
                    else None, chosen.name, measured["summary"], cost, verdict, reasons, measured["per_split"])
