"""The causal-LM half of the Python API: what `prunelora.unlearn`, `plan` and `evaluate` do with a causal LM.

    import prunelora
    result = prunelora.unlearn(model, "train.jsonl", forget=["p0003-birth_city", ...], tokenizer=tokenizer,
                               method="npo@prune+lora", holdout="holdout.jsonl", epochs=5)
    result.model.save_pretrained("unlearned")        # a transformers model of the input's class
    result.measures["forget_rouge_l"], result.verdict

The data are question/answer or plain-text examples: a .jsonl path or rows (dicts) in the dataset's fields.
`forget` is the forget set (rows or a path), or ids naming examples of `retain` (which then holds the whole
training set, as on the command line). Retrain needs the initialisation and a recipe to train from scratch:
use `prunelora reproduce --task causal-lm`.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config.causal_lm import LMConfig, resolve
from .config.parsing import merge, nest
from .data.text.examples import Example, LMSplits, from_rows, read_examples, split, with_copies
from .data.text.tokens import encode, format_name
from .errors import UnlearningWarning, UserError
from .machine import select_device
from .methods import get_method
from .methods.causal_lm.plan import describe
from .metrics.causal_lm import measure as measures
from .metrics.causal_lm import verdicts
from .models.causal_lm.loading import weight_dtype
from .registry import CAUSAL_LM
from .runner.causal_lm import unlearn_with

Data = str | Path | list[dict]
DEFAULT_METHOD = "npo@prune+lora"


@dataclass
class LMResult:
    """What `prunelora.unlearn` gives back for a causal LM."""

    model: nn.Module  # the unlearned model, adapters merged: the input's class
    adapter: nn.Module | None  # the PEFT model (LoRA methods), for save_pretrained of the adapter alone
    method: str
    measures: dict[str, float]  # forget/retain/holdout probability, ROUGE-L, truth ratio, utility, attack AUCs
    cost: dict[str, Any]
    verdict: str  # without Retrain: forget vs holdout (metrics/causal_lm/verdicts.py)
    reasons: list[str] = field(default_factory=list)
    per_example: dict[str, Any] = field(default_factory=dict)
    original: dict[str, float] = field(default_factory=dict)  # the same measures of the model before unlearning

    def __repr__(self) -> str:
        shown = ", ".join(f"{k} {self.measures[k]:.3f}" for k in ("forget_prob", "forget_rouge_l", "model_utility", "retain_utility",
                                                                   "mia_min_k_auc") if k in self.measures)
        return f"LMResult({self.method}: {shown}; {self.verdict})"


def settings_config(settings: dict[str, Any]) -> LMConfig:
    """The task's configuration with `settings` (any LMConfig field by dotted name, a Python value each) over its
    defaults; `prompt_template` is data.prompt_template."""
    values: dict[str, Any] = {}
    for name, value in settings.items():
        dotted = {"prompt_template": "data.prompt_template"}.get(name, name)
        values = merge(values, nest(dotted, value))
    return resolve(None, values)


def examples_of(data: Data, config: LMConfig, kind: str | None = None, what: str = "data") -> tuple[str, list[Example]]:
    """(kind, examples) of a .jsonl path or of rows in the dataset's fields."""
    if isinstance(data, (str, Path)):
        return read_examples(data, config.data, kind)
    if not isinstance(data, (list, tuple)) or not data or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{what}: give a .jsonl path or a non-empty list of rows (dicts with the dataset's fields)")
    found, examples = from_rows(list(data), config.data, what)
    if kind is not None and found != kind:
        raise UserError(f"{what} holds {found} examples but the data holds {kind} examples: give both in one form")
    return found, examples


def lm_splits(retain: Data, forget: Data | list[str], holdout: Data | None, config: LMConfig) -> LMSplits:
    """The forget, retain and holdout examples of the arguments `unlearn` and `evaluate` take."""
    kind, train = examples_of(retain, config, what="retain")
    if isinstance(forget, (list, tuple)) and forget and all(isinstance(i, str) for i in forget):
        known = {ex.id for ex in train}
        missing = [i for i in forget if i not in known]
        if missing:
            raise UserError(f"forget: {len(missing)} ids match no example of retain (first: {', '.join(missing[:3])})")
        ids, request = list(dict.fromkeys(forget)), f"{len(set(forget))} named examples"
    else:
        _, named = examples_of(forget, config, kind, "forget")
        train, ids, request = train + named, [ex.id for ex in named], f"{len(named)} examples given"
    if not ids:
        raise UserError("forget names no example")
    ids, notes = with_copies(train, ids, kind, "forget")  # a copy left to keep would teach it back
    for note in notes:
        warnings.warn(note, UnlearningWarning, stacklevel=3)
    held = examples_of(holdout, config, kind, "holdout")[1] if holdout is not None else []
    return split(kind, train, ids, held, request)


def unlearn_causal_lm(model: nn.Module, retain: Data, forget: Data | list[str], *, tokenizer, method: str | None,
                      holdout: Data | None = None, epochs: int | None = None, seed: int = 0,
                      method_args: dict[str, Any] | None = None, device: str = "auto", progress: bool = False,
                      **settings: Any) -> LMResult:
    """prunelora.unlearn for a causal LM (see the module docstring; `model` is left untouched).

    settings: any LMConfig field by dotted name, e.g. {"unlearn.lora_r": 4, "data.max_length": 256}, and
    prompt_template (your model's prompt format, e.g. "{question} "). Before unlearning, the original must know
    the forget set in that format (the memorisation check: metrics/causal_lm/verdicts.knows_forget_set), else a
    UserError with the figures (force=True runs anyway)."""
    if tokenizer is None:
        raise UserError("a causal LM needs its tokenizer: prunelora.unlearn(model, retain, forget, tokenizer=...)")
    if epochs is not None:
        settings["unlearn.epochs"] = epochs
    config = settings_config(settings)
    if method_args:
        config.method_args = {(method or DEFAULT_METHOD): dict(method_args)}
    chosen = get_method(method or DEFAULT_METHOD, CAUSAL_LM)
    if chosen.exact:
        raise UserError("Retrain trains from scratch: run `prunelora reproduce --task causal-lm` (or unlearn "
                        "--methods retrain) for it")
    chosen.check(config.method_args)
    splits = lm_splits(retain, forget, holdout, config)
    target = select_device(device)
    original = copy.deepcopy(model).to(target, weight_dtype(config.precision, target))
    d = config.data
    sets = {"forget": splits.forget, "retain": measures.retain_sample(splits.retain, config.data.eval_retain, seed),
            "holdout": splits.holdout}
    before = measures.measure(original, tokenizer, sets, d.max_length, target, d.max_new_tokens,
                              d.prompt_template)["summary"]
    knows, figures = verdicts.knows_forget_set(before)
    if not knows and not config.force:
        raise UserError(f"the original does not know the forget set in the prompt format "
                        f"{format_name(tokenizer, d.prompt_template)!r} ({figures}): give your model's format with "
                        "prompt_template=... (e.g. \"{question} \"), or force=True to unlearn anyway")
    run = unlearn_with(chosen, original, encode(tokenizer, splits.retain, d.max_length, target, d.prompt_template),
                       encode(tokenizer, splits.forget, d.max_length, target, d.prompt_template), config, seed,
                       progress)
    delivered = run.delivered()
    measured = measures.measure(delivered, tokenizer, sets, d.max_length, target, d.max_new_tokens, d.prompt_template)
    verdict, reasons = verdicts.without_retrain(measured["summary"], len(splits.forget), len(splits.holdout), before)
    return LMResult(delivered, run.model if run.prepared.save_adapters is not None else None, chosen.name,
                    measured["summary"], run.cost, verdict, reasons, measured["per_split"], before)


def evaluate_causal_lm(model: nn.Module, sets: dict[str, Data], *, tokenizer, seed: int = 0, device: str = "auto",
                       **settings: Any) -> dict[str, float]:
    """prunelora.evaluate for a causal LM: `sets` maps forget, retain and (for the attacks) holdout to examples."""
    if tokenizer is None:
        raise UserError("a causal LM needs its tokenizer: prunelora.evaluate(model, sets, tokenizer=...)")
    unknown = set(sets) - {"forget", "retain", "holdout"}
    if unknown or "forget" not in sets:
        raise UserError("sets: give forget (and retain, holdout) examples, e.g. {'forget': rows, 'retain': 'x.jsonl'}")
    config = settings_config(settings)
    kind, forget = examples_of(sets["forget"], config, what="forget")
    chosen = {"forget": forget}
    for name in ("retain", "holdout"):
        if sets.get(name) is not None:
            chosen[name] = examples_of(sets[name], config, kind, name)[1]
    if "retain" in chosen:
        chosen["retain"] = measures.retain_sample(chosen["retain"], config.data.eval_retain, seed)
    target = select_device(device)
    with torch.no_grad():
        d = config.data
        return measures.measure(model.to(target), tokenizer, chosen, d.max_length, target, d.max_new_tokens,
                                d.prompt_template)["summary"]


def plan_causal_lm(model: nn.Module, **settings: Any) -> str:
    """prunelora.plan for a causal LM: its inferred structure and what each surgery prunes, adapts and trains."""
    return describe(model, settings_config(settings).unlearn)
