"""What a resolved config must satisfy before anything runs: checks that need neither the data nor the
method and model registries (the preflight, driver.check_config, runs those: method names, "paper" and
"all" included, and model arguments)."""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from ..data.scenarios import get_scenario
from ..errors import UserError
from .schema import (
    LORA_DROPOUT_PLACES,
    MIA_PROTOCOLS,
    PRECISIONS,
    PRUNE_MODES,
    PRUNE_SCORES,
    DataConfig,
    EvidenceConfig,
    RunConfig,
)

MAX_IMAGE_SIDE = 4096  # --image-size: a side beyond it is a typo (an 8192 x 8192 RGB image is 200 MB as uint8)


def require_finite_settings(node: Any, where: str) -> None:
    """Refuse NaN and infinite numbers anywhere in a config (dataclasses, mappings, lists): a NaN passes
    every `<= 0` check and trains NaN weights."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            require_finite_settings(getattr(node, f.name), f"{where}.{f.name}" if where else f.name)
    elif isinstance(node, dict):
        for key, value in node.items():
            require_finite_settings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            require_finite_settings(value, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise UserError(f"config: '{where}' must be a finite number, got {node} (give a finite value)")


def _number(value: Any) -> float | None:
    """A YAML/CLI value as a float where it reads as one ("1e-3" included), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# What the objectives' numeric settings (objectives/*.py Args) must satisfy, by name: (test, what it must be).
METHOD_ARG_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{k: ((lambda v: v > 0), "positive") for k in ("lr", "temperature", "batch_size", "forget_batch_size")},
    **{k: ((lambda v: v >= 0), "at least 0") for k in ("momentum", "weight_decay", "alpha", "gamma", "max_steps")},
    "share": ((lambda v: 0 < v <= 1), "a share in (0, 1]"),
}


def validate_method_args(method_args: dict[str, dict[str, Any]]) -> None:
    """Every number of every method's settings finite, and within METHOD_ARG_RULES (an unknown key or a
    wrong type is refused by the objective's Args when the method is checked)."""
    for name, args in method_args.items():
        if not isinstance(args, dict):
            raise UserError(f"config: 'method_args.{name}' must be a mapping of settings (for example "
                            f"--set method_args.{name}.lr=0.01), got {args!r}")
        for key, value in args.items():
            number = _number(value)
            if number is None:
                continue
            if not math.isfinite(number):
                raise UserError(f"config: 'method_args.{name}.{key}' must be a finite number, got {value!r} "
                                "(give a finite value)")
            test, must = METHOD_ARG_RULES.get(key, (lambda v: True, ""))
            if not test(number):
                raise UserError(f"method_args.{name}.{key} must be {must}, got {value!r} (set it with "
                                f"--set method_args.{name}.{key}=...)")


def validate(config: RunConfig) -> None:
    """Checks that do not need the data or the method and model registries (those check themselves).
    Sorts the unlearning budgets and drops repeated seeds."""
    require_finite_settings(config, "")
    validate_method_args(config.method_args)
    u = config.unlearn
    if not 0.0 < u.prune_amount < 1.0:
        raise UserError(f"prune amount must lie in (0, 1), got {u.prune_amount} (for example --prune-amount 0.5)")
    if u.prune_score not in PRUNE_SCORES:
        raise UserError(f"unknown prune score '{u.prune_score}' (choose from: {', '.join(PRUNE_SCORES)})")
    if u.lora_dropout_on not in LORA_DROPOUT_PLACES:
        raise UserError(f"unknown LoRA dropout place '{u.lora_dropout_on}' (choose {' or '.join(LORA_DROPOUT_PLACES)})")
    if u.prune_mode not in PRUNE_MODES:
        raise UserError(f"unknown prune mode '{u.prune_mode}' (choose auto, mask or remove)")
    if not u.epochs or any(e <= 0 for e in u.epochs):
        raise UserError(f"epochs must be positive integers, got {u.epochs} (for example --epochs 5,10)")
    if config.pretrain.epochs <= 0:
        raise UserError(f"pretrain epochs must be a positive integer, got {config.pretrain.epochs}")
    for name, value in (("unlearn batch size", u.batch_size), ("pretrain batch size", config.pretrain.batch_size)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    for name, value, example in (("unlearn.lr", u.lr, "--lr 0.001"),
                                 ("pretrain.lr", config.pretrain.lr, "--set pretrain.lr=0.1")):
        if value is not None and value <= 0:
            raise UserError(f"learning rates must be positive: {name} is {value} (for example {example})")
    for name, value in (("unlearn.weight_decay", u.weight_decay), ("pretrain.weight_decay", config.pretrain.weight_decay),
                        ("pretrain.momentum", config.pretrain.momentum),
                        ("pretrain.warmup_epochs", config.pretrain.warmup_epochs)):
        if value is not None and value < 0:
            raise UserError(f"{name} cannot be negative, got {value}")
    if u.until_forget_acc is not None and not 0.0 <= u.until_forget_acc <= 100.0:
        raise UserError(f"--until-forget-acc must be a forget-set accuracy in [0, 100] %, got {u.until_forget_acc}")
    if u.lora_r is not None and u.lora_r <= 0:
        raise UserError(f"lora rank must be positive, got {u.lora_r}")
    if u.lora_alpha is not None and u.lora_alpha <= 0:
        raise UserError(f"unlearn.lora_alpha must be positive, got {u.lora_alpha}")
    if u.lora_dropout is not None and not 0.0 <= u.lora_dropout < 1.0:
        raise UserError(f"unlearn.lora_dropout must lie in [0, 1), got {u.lora_dropout}")
    for name, value in (("train_per_class", config.data.train_per_class), ("test_per_class", config.data.test_per_class),
                        ("holdout_per_class", config.data.holdout_per_class)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    size = config.data.image_size
    if size is not None and not 1 <= size <= MAX_IMAGE_SIDE:
        raise UserError(f"--image-size {size}: give a side between 1 and {MAX_IMAGE_SIDE} pixels")
    if config.precision not in PRECISIONS:
        raise UserError(f"unknown precision '{config.precision}' (choose fp32 or bf16)")
    for name in ("prune_layers", "lora_layers"):
        pattern = getattr(u, name)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserError(f"unlearn.{name} is not a valid regular expression: {exc}") from None
    validate_request(config.data)
    validate_evidence(config.evidence, config.data)
    if not config.seeds:
        raise UserError("at least one seed is needed (for example --seeds 0)")
    if not config.models:
        raise UserError("at least one model is needed (for example --models resnet18)")
    if config.threads is not None and config.threads <= 0:
        raise UserError(f"threads must be a positive integer, got {config.threads} (for example --threads 2)")
    if not config.methods:
        raise UserError("at least one method is needed (for example --methods finetune,prunelora)")
    u.epochs = sorted(set(u.epochs))
    config.seeds = list(dict.fromkeys(config.seeds))


def validate_request(data: DataConfig) -> None:
    """The forget request's settings: --forget alone picks the named scenario; the scenario checks the rest
    (an unknown one names the choices)."""
    if data.forget is not None and not data.forget:
        raise UserError("--forget needs a request file (for example --forget request.txt)")
    if data.forget and data.scenario == "class":
        data.scenario = "named"
    if not data.forget:
        for flag, given in (("--id-column", data.id_column is not None), ("--allow-empty-class", data.allow_empty_class)):
            if given:
                raise UserError(f"{flag} goes with --forget (a request file naming the samples to forget)")
    get_scenario(data.scenario).check(data)


def refuse_given_together(given: dict[str, Any]) -> None:
    """Settings the user gave (a file, flags) that ask for two things at once: checked on what was given, since
    defaults, presets and a checkpoint's context fill every field."""
    data = given.get("data") or {}
    if not data.get("forget"):
        return
    if data.get("forget_class") is not None:
        raise UserError("--forget and --forget-class both say what to forget: give one (the request file's samples, "
                        "or a whole class)")
    if data.get("scenario") == "class":
        raise UserError("--forget names samples and --scenario class forgets a class: leave out --scenario (several "
                        "request files in order: --scenario sequential)")


def validate_evidence(evidence: EvidenceConfig, data: DataConfig) -> None:
    """The evidence settings that can be refused without the data (U-LiRA's capacity is checked with it)."""
    if evidence.mia_protocol not in MIA_PROTOCOLS:
        raise UserError(f"unknown MIA protocol '{evidence.mia_protocol}' (choose from: {', '.join(MIA_PROTOCOLS)})")
    if evidence.mia_draws < 1:
        raise UserError(f"--mia-draws must be at least 1, got {evidence.mia_draws}")
    if evidence.ulira != 0 and evidence.ulira < 2:
        raise UserError(f"--ulira needs at least 2 shadow pairs (each pair is scored by the others), got "
                        f"{evidence.ulira} (0 turns it off)")
    if evidence.ulira and get_scenario(data.scenario).sequential:
        raise UserError("--ulira measures one request: use it with --scenario class or random, not sequential")
    if not 0.0 < evidence.relearn_share < 1.0:
        raise UserError(f"evidence.relearn_share must lie in (0, 1), got {evidence.relearn_share}")
    if evidence.relearn_lr <= 0 or evidence.relearn_max_steps < 1:
        raise UserError("evidence.relearn_lr must be positive and evidence.relearn_max_steps at least 1")
