"""Typed configuration: dataclasses, presets, YAML in and out, dotted CLI overrides.

Precedence, lowest first: dataclass defaults < preset < YAML file < command-line flags.
The resolved config is saved with every result so that a run can be reproduced from it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

SCENARIOS = ("class", "random", "sequential")


def default_methods() -> list[str]:
    """The paper's paradigms (the method registry says which)."""
    from .methods import paper_methods

    return paper_methods()


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | cifar10 | cifar100, or a path: an image folder, an .npz, a datasets folder
    data_root: str | None = None  # None: $PRUNELORA_DATA, else ~/.cache/prunelora/data
    forget_class: int | str = 3  # a class index, or a class name of the data ("cat")
    scenario: str = "class"  # class (one class) | random (a random share of the training set) | sequential
    forget_ratio: float | None = None  # random: the share forgotten (None: 0.1); sequential: the share per request
    requests: list[int | str] | None = None  # sequential: classes in order, or [k] random chunks with forget_ratio

    @property
    def class_wise(self) -> bool:
        """Whether the request forgets whole classes (class, or sequential class requests)."""
        return self.scenario == "class" or (self.scenario == "sequential" and self.forget_ratio is None)
    train_per_class: int | None = None  # class-balanced subset of the training split
    test_per_class: int | None = None  # class-balanced subset of the test split (cheaper evaluation)
    holdout_per_class: int | None = None  # training images per class never trained on (the field's validation split)
    download: bool = True  # fetch the official archive when the folder is missing and we are online
    stream: bool = False  # read images per batch from where they are kept (files, host memory): data larger than memory
    flip: bool | None = None  # augmentation's horizontal flip; None: the dataset's own (digits no, CIFAR and files yes)


@dataclass
class RecipeConfig:
    """How the original model (and the exact Retrain baseline) is trained.

    Fields left at None take the model family's default: SGD momentum 0.9, lr 0.1, weight decay
    5e-4, batch 128 for ResNets (the field's recipe); AdamW lr 3e-3, weight decay 0.05, batch 32 with
    warm-up for ViTs, which do not train from scratch under plain SGD at lr 0.1 (3e-3 measured best of
    1e-3, 2e-3, 3e-3 on digits). Both reach at least 97 % test accuracy on digits in the cpu preset's 60
    epochs (the ViT at batch 128: 79 % after 30 epochs, 96 % after 100).
    """

    epochs: int = 15
    optimizer: str | None = None  # sgd | adam | adamw
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    batch_size: int | None = None  # None: the family's (ResNet 128, ViT 32)
    warmup_epochs: float | None = None
    augment: bool = True


@dataclass
class UnlearnConfig:
    """The unlearning phase shared by finetune, prune-finetune, lora and prunelora (paper: Adam 1e-3)."""

    epochs: list[int] = field(default_factory=lambda: [5, 10])  # evaluation budgets of one run
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    augment: bool = False  # the paper's code unlearns without augmentation
    prune_amount: float = 0.5  # share of output channels removed per chosen layer (L2 norm)
    prune_mode: str = "mask"  # mask (paper) | remove (channels physically taken out)
    keep_sparsity: bool = False  # prunelora: mask the LoRA update so merged weights keep the pruned structure
    lora_r: int | None = None  # None: family default (ResNet 8, ViT 16)
    lora_alpha: int | None = None  # None: 2 * r
    lora_dropout: float | None = None  # None: family default (ResNet 0.1, ViT 0.0)
    cache_prefix: bool = True  # reuse the frozen prefix's activations where that is exact
    prune_layers: str | None = None  # regex over module names; None: the model's own plan (the paper's layers)
    lora_layers: str | None = None  # regex over module names; None: the model's own plan
    until_forget_acc: float | None = None  # stop at the first epoch whose forget-set accuracy (%) is at most this


@dataclass
class EvidenceConfig:
    """How each model is measured beyond UA, RA and TA. Evaluation only: changing these on a finished
    run re-evaluates its saved models and never retrains them (they are not part of a run's identity)."""

    mia_protocol: str = "balanced"  # balanced (shadow draws with hold-out) | liu (the field's reference protocol)
    mia_draws: int = 5  # seeded shadow draws per attack: mean and spread of efficacy and attacker accuracy
    challenge: bool = True  # the NeurIPS 2023 challenge's loss attack, forget vs unseen
    probe: bool = True  # linear probe on the penultimate features
    relearn: bool = True  # relearn time
    relearn_share: float = 0.1  # of the forget set, finetuned on
    relearn_lr: float = 0.01  # full-batch SGD with momentum 0.9
    relearn_max_steps: int = 50
    ulira: int = 0  # U-LiRA shadow pairs (0: off; at least 2)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    models: list[str] = field(default_factory=lambda: ["resnet18", "vit"])
    model_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model name: width, depth, ...
    methods: list[str] = field(default_factory=default_methods)  # registry names, OBJECTIVE@SURGERY, or all
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method or objective: lr, alpha, ...
    pretrain: RecipeConfig = field(default_factory=RecipeConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (CUDA autocast)
    channels_last: bool = False  # convolutions in channels-last memory format (faster on tensor-core GPUs)
    preset: str = "cpu"
    protocol: str | None = None  # a published setting (PROTOCOLS): salun
    out: str | None = None  # None: the command's own folder (runs/reproduce, runs/train, runs/unlearn/..., ...)
    threads: int | None = None  # torch intra-op threads; None: the cores available to the process
    eval_batch_size: int = 256  # data.batches.EVAL_BATCH: 3x faster than 1024 for a CPU forward (cache-sized)
    mia_max_per_side: int = 1000  # balanced shadow sample cap for the attacks (RBF SVC cost ~ n^2)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)

    def identity(self) -> dict[str, Any]:
        """What decides a run's trained models: everything but where it is written, how it computes (threads,
        memory layout, evaluation batch) and the evidence settings (evaluation only: a run re-evaluated with
        other evidence is the same run)."""
        identity = {k: v for k, v in to_dict(self).items()
                    if k not in ("out", "threads", "channels_last", "eval_batch_size", "evidence")}
        identity["data"] = {k: v for k, v in identity["data"].items() if k != "stream"}  # the same numbers either way
        return identity


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: for tests and a first look.
    "smoke": {
        "data": {"train_per_class": 24, "test_per_class": 12, "holdout_per_class": None},
        "model_args": {
            "resnet18": {"width": 4},
            "resnet50": {"width": 4},
            "vit": {"depth": 2, "dim": 32, "heads": 2, "mlp_dim": 64},
        },
        "pretrain": {"epochs": 2},
        "unlearn": {"epochs": [1, 2]},
        "mia_max_per_side": 200,
        "evidence": {"mia_draws": 2, "relearn_max_steps": 10},
    },
    # Minutes on 2 CPU cores: the default.
    "cpu": {
        "data": {"train_per_class": 500, "test_per_class": 500},
        "model_args": {
            "resnet18": {"width": 8},
            "resnet50": {"width": 8},
            "vit": {"depth": 4, "dim": 64, "heads": 2, "mlp_dim": 128},
        },
        "pretrain": {"epochs": 60},
        "unlearn": {"epochs": [5, 10]},
    },
    # Real accuracy in minutes on one GPU: full CIFAR-10, ResNet-18 at full width and a 7 x 384 ViT,
    # a short strong recipe (bf16 autocast, channels-last, cosine schedule with augmentation); Retrain
    # runs the same recipe, so exact unlearning is measured against a strong, fast baseline.
    "gpu": {
        "data": {"dataset": "cifar10", "train_per_class": None, "test_per_class": None},
        "model_args": {
            "resnet18": {"width": 64},
            "resnet50": {"width": 64},
            "vit": {"depth": 7, "dim": 384, "heads": 6, "mlp_dim": 768},
        },
        "pretrain": {"epochs": 40, "batch_size": 256},
        "unlearn": {"epochs": [5, 10]},
        "precision": "bf16",
        "channels_last": True,
        "eval_batch_size": 2048,
    },
    # The paper's scale (ResNet-50, ViT 12 x 384, 200 pre-training epochs): for a GPU.
    "paper": {
        "models": ["resnet50", "vit"],
        "model_args": {
            "resnet18": {"width": 64},
            "resnet50": {"width": 64},
            "vit": {"depth": 12, "dim": 384, "heads": 6, "mlp_dim": 1536},
        },
        "pretrain": {"epochs": 200},
        "unlearn": {"epochs": [5, 10]},
    },
}


# The field's published settings, one flag each (--protocol NAME): applied over the preset, under YAML and flags.
# "salun": SalUn (Fan et al., ICLR 2024, Table 2) and Unlearn-Sparse (Liu et al., NeurIPS 2023): CIFAR-10 with its
# 45 000 / 5 000 train / validation split, ResNet-18 at full width, forget 10 % at random (4 500 images; or one
# class with --scenario class), 10 unlearning epochs (GA's published row is its 5-epoch budget), MIA-Efficacy by
# Unlearn-Sparse's SVC_MIA (the liu protocol), FT as the field runs it (SGD lr 0.01, batch 256, augmented). The
# original and Retrain run the gpu preset's 40-epoch cosine recipe, not the reference's 182 epochs.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "salun": {
        "data": {"dataset": "cifar10", "train_per_class": None, "test_per_class": None, "holdout_per_class": 500,
                 "scenario": "random", "forget_ratio": 0.1},
        "models": ["resnet18"],
        "model_args": {"resnet18": {"width": 64}},
        "methods": ["retrain", "finetune", "ga", "rl", "ft-l1", "salun", "prunelora"],
        "method_args": {"finetune": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                                     "batch_size": 256, "augment": True}},
        "pretrain": {"epochs": 40, "batch_size": 256},
        "unlearn": {"epochs": [5, 10]},
        "evidence": {"mia_protocol": "liu"},
    },
}
# Without CUDA the same protocol at a size 2 CPU cores finish in about an hour: these replace the above there.
PROTOCOLS_ON_CPU: dict[str, dict[str, Any]] = {
    "salun": {
        "data": {"train_per_class": 900, "test_per_class": 500, "holdout_per_class": 100},
        "model_args": {"resnet18": {"width": 16}},
        "pretrain": {"epochs": 30, "batch_size": 128},
    },
}


def protocol_values(name: str | None, device: str) -> dict[str, Any]:
    """The overlay of a protocol (its CPU size when the run will not have CUDA); {} for none."""
    if name is None:
        return {}
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol '{name}' (choose from: {', '.join(PROTOCOLS)})")
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return PROTOCOLS[name] if cuda else _merge(PROTOCOLS[name], PROTOCOLS_ON_CPU.get(name, {}))


def _merge(base: dict, update: dict) -> dict:
    """Deep-merge update into a copy of base (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise a UserError naming the field."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:  # the first type the value converts to (int | str: "3" -> 3, "cat" -> "cat")
            try:
                return _coerce(value, option, where)
            except UserError:
                continue
        return _coerce(value, inner[-1], where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"config: '{where}' must be a mapping, got {value!r}")
        return _build(hint, value, where)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config: '{where}' must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config: '{where}' must be a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if hint is Any:
        return value
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            number = float(value)
            if not math.isfinite(number):
                raise UserError(f"config: '{where}' must be a finite number, got {value!r} (give a finite "
                                "value)")
            return number
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"config: '{where}' must be {hint.__name__}, got {value!r}") from None
    return value


def _build(cls: type, values: dict, where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise UserError(f"config: unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def load_yaml(yaml_path: str | Path | None) -> dict[str, Any]:
    """The mapping in a YAML config file ({} for None); a missing or malformed file is a UserError."""
    if yaml_path is None:
        return {}
    path = Path(yaml_path)
    if not path.is_file():
        raise UserError(f"config file not found: {path} (pass an existing YAML file to --config)")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return values


# The preset used when neither a flag nor the config file names one (the README's tests set it to smoke).
PRESET_ENV = "PRUNELORA_PRESET"


def resolve(preset: str | None = None, yaml_path: str | Path | None = None,
            overrides: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> RunConfig:
    """Build the run's config: defaults < preset < protocol < context < YAML < overrides (nested dicts).

    context: what a checkpoint says about itself (its dataset, model, forget class), which a
    command on that checkpoint takes unless the user says otherwise.
    """
    file_values = load_yaml(yaml_path)
    overrides = overrides or {}
    explicit = overrides.get("preset") or preset or file_values.get("preset") or os.environ.get(PRESET_ENV)
    name = explicit or RunConfig.preset
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}' (choose from: {', '.join(PRESETS)})")
    protocol = protocol_values(overrides.get("protocol") or file_values.get("protocol"),
                               overrides.get("device") or file_values.get("device") or RunConfig.device)
    # A protocol sets the published sizes over the default preset; a preset named explicitly sizes it instead
    # (--protocol salun --preset smoke: the protocol's settings at the smoke preset's size).
    layers = [protocol, PRESETS[name]] if explicit and protocol else [PRESETS[name], protocol]
    values = dataclasses.asdict(RunConfig())
    for layer in layers:
        values = _merge(values, layer)
    values = _merge(values, context or {})
    values = _merge(values, file_values)
    values = _merge(values, overrides)
    values["preset"] = name
    config = _build(RunConfig, values)
    validate(config)
    return config


def parse_dotted(assignments: list[str]) -> dict[str, Any]:
    """Turn ['unlearn.lr=5e-4', 'data.forget_class=2'] into a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got '{item}' (for example --set unlearn.lr=5e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


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
METHOD_ARG_RULES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
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
    """Checks that do not need the data or the registries (those check themselves)."""
    require_finite_settings(config, "")
    validate_method_args(config.method_args)
    u = config.unlearn
    if not 0.0 < u.prune_amount < 1.0:
        raise UserError(f"prune amount must lie in (0, 1), got {u.prune_amount} (for example --prune-amount 0.5)")
    if u.prune_mode not in ("mask", "remove"):
        raise UserError(f"unknown prune mode '{u.prune_mode}' (choose mask or remove)")
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
    if config.precision not in ("fp32", "bf16"):
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
    u.epochs = sorted(set(u.epochs))
    config.seeds = list(dict.fromkeys(config.seeds))
    from .methods import method_names

    config.methods = method_names(config.methods, class_wise=config.data.class_wise)
    if not config.methods:
        raise UserError("at least one method is needed (for example --methods finetune,prunelora)")


def validate_evidence(evidence: EvidenceConfig, data: DataConfig) -> None:
    """The evidence settings that can be refused without the data (U-LiRA's capacity is checked with it)."""
    from .metrics.mia import PROTOCOLS

    if evidence.mia_protocol not in PROTOCOLS:
        raise UserError(f"unknown MIA protocol '{evidence.mia_protocol}' (choose from: {', '.join(PROTOCOLS)})")
    if evidence.mia_draws < 1:
        raise UserError(f"--mia-draws must be at least 1, got {evidence.mia_draws}")
    if evidence.ulira != 0 and evidence.ulira < 2:
        raise UserError(f"--ulira needs at least 2 shadow pairs (each pair is scored by the others), got "
                        f"{evidence.ulira} (0 turns it off)")
    if evidence.ulira and data.scenario == "sequential":
        raise UserError("--ulira measures one request: use it with --scenario class or random, not sequential")
    if not 0.0 < evidence.relearn_share < 1.0:
        raise UserError(f"evidence.relearn_share must lie in (0, 1), got {evidence.relearn_share}")
    if evidence.relearn_lr <= 0 or evidence.relearn_max_steps < 1:
        raise UserError("evidence.relearn_lr must be positive and evidence.relearn_max_steps at least 1")


def validate_request(data: DataConfig) -> None:
    """The forget request: a scenario, a share in (0, 1), requests where the scenario needs them."""
    if data.scenario not in SCENARIOS:
        raise UserError(f"unknown scenario '{data.scenario}' (choose from: {', '.join(SCENARIOS)})")
    if data.forget_ratio is not None and not 0.0 < data.forget_ratio < 1.0:
        raise UserError(f"--forget-ratio must lie in (0, 1), got {data.forget_ratio} (for example --forget-ratio 0.1)")
    if data.scenario == "sequential":
        if not data.requests:
            raise UserError("--scenario sequential needs --requests: classes in order (3,5,7), or a number of "
                            "random chunks with --forget-ratio (--requests 3 --forget-ratio 0.1)")
        if data.forget_ratio is not None:
            if len(data.requests) != 1 or not isinstance(data.requests[0], int) or data.requests[0] < 1:
                raise UserError(f"with --forget-ratio, --requests is the number of random chunks (for example "
                                f"--requests 3), got {','.join(map(str, data.requests))}")
            if data.requests[0] * data.forget_ratio >= 1.0:
                raise UserError(f"{data.requests[0]} requests of {data.forget_ratio} each would forget the whole "
                                "training set (lower --requests or --forget-ratio)")
        elif len(set(data.requests)) != len(data.requests):
            raise UserError(f"--requests repeats a class: {','.join(map(str, data.requests))} (each class is "
                            "forgotten once)")
    elif data.requests:
        raise UserError(f"--requests goes with --scenario sequential, not {data.scenario}")


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the cache key of a trained model or a stage."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
