"""The run's settings as typed dataclasses, each field with its help and, where it has one, its CLI flag.

A field's metadata is all the command line needs (flags.py generates each command's parser from it):
``help`` (what it does, never its default: the help shows the dataclass's), ``flag`` (the option),
``commands`` (which commands take it), and optionally ``group`` (the help section; on a section's
field, that of its flags), ``single`` (a flag taking one element of a list field: --seed for seeds),
``none`` (what None means, shown as the default), ``choices`` (a registry's name, resolved by the CLI,
or a tuple of this module's), ``checkpoint`` (commands on a checkpoint take it from there) and
``metavar``. Fields without ``flag`` are set with ``--set`` or a YAML file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..data.scenarios import get_scenario

# Which commands take a flag (bench is the speed harness; plan reads a model and writes nothing).
TRAINING = ("reproduce", "train", "unlearn", "bench", "search")  # commands that may train (an original, a method)
RUNS = ("reproduce", "train", "unlearn", "evaluate", "bench", "search")  # commands that write a run folder
DATA = ("reproduce", "train", "unlearn", "evaluate", "plan", "bench", "search")  # every command that loads data
UNLEARNING = ("reproduce", "unlearn", "search")
EVIDENCE = ("reproduce", "unlearn", "evaluate", "search")
# The membership attacks' balanced shadow sample, per side (RBF SVC cost grows with its square); metrics use it too.
MIA_MAX_PER_SIDE = 1000

MODELS = ("reproduce", "train", "bench", "search")  # commands that build registry models (the others read a checkpoint)

# Settings whose values this package owns (the registries own the others: methods, models, scenarios, ...).
PRUNE_MODES = ("auto", "mask", "remove")
LORA_DROPOUT_PLACES = ("input", "rank")  # methods/lora.py DROPOUT_PLACES
PRUNE_SCORES = ("l2", "saliency")
PRECISIONS = ("fp32", "bf16")
MIA_PROTOCOLS = ("balanced", "liu")  # metrics.mia implements them (tests/test_config.py keeps the two in step)


@dataclass
class DataConfig:
    """The data and the forget request."""

    dataset: str = field(default="digits", metadata={
        "help": "digits | cifar10 | cifar100, or a path: an image folder, an .npz, a datasets folder",
        "flag": "--dataset", "commands": DATA, "checkpoint": True})
    data_root: str | None = field(default=None, metadata={
        "help": "folder holding the dataset", "none": "$PRUNELORA_DATA, else ~/.cache/prunelora/data",
        "flag": "--data-root", "commands": DATA, "checkpoint": True})
    forget_class: int | str = field(default=3, metadata={
        "help": "class to forget, an index or a name of the data's classes (\"cat\")",
        "flag": "--forget-class", "commands": DATA, "checkpoint": True})
    scenario: str = field(default="class", metadata={
        "help": "one class, a random share of the training set, a sequence of requests, or the samples a request "
                "file names (chosen by --forget)",
        "flag": "--scenario", "commands": UNLEARNING, "group": "what to forget", "choices": "scenarios"})
    forget_ratio: float | None = field(default=None, metadata={
        "help": "random: the share forgotten; sequential: the share of each random request",
        "none": "random: 0.1", "flag": "--forget-ratio", "commands": UNLEARNING, "group": "what to forget"})
    requests: list[int | str] | None = field(default=None, metadata={
        "help": "sequential: classes in order (3,5,7 or names), or with --forget-ratio the number of random "
                "requests (3)", "none": "none (one request)", "flag": "--requests", "commands": UNLEARNING, "group": "what to forget"})
    forget: list[str] | None = field(default=None, metadata={
        "help": "a request file naming the training samples to forget (one id a line, or a .csv with an id "
                "column): an image folder's file paths, a datasets folder's --id-column values, else row indices; "
                "with --scenario sequential, several comma-separated: the requests in order",
        "none": "none (--forget-class)", "flag": "--forget", "commands": DATA, "group": "what to forget",
        "metavar": "FILE"})
    id_column: str | None = field(default=None, metadata={
        "help": "the column of a datasets folder holding the sample ids --forget names", "none": "the row index",
        "flag": "--id-column", "commands": DATA, "metavar": "NAME"})
    allow_empty_class: bool = field(default=False, metadata={
        "help": "let --forget name every training sample a class keeps (the model cannot keep that class)",
        "flag": "--allow-empty-class", "commands": DATA, "group": "what to forget"})
    image_size: int | None = field(default=None, metadata={
        "help": "resize the images to N x N pixels: an image folder's (whose images may differ in size), a datasets "
                "folder's, or digits' (upsampled from 8 x 8)",
        "none": "an image folder's first image's size, a datasets folder's own, digits 16",
        "flag": "--image-size", "commands": DATA, "checkpoint": True, "metavar": "N"})
    train_per_class: int | None = field(default=None, metadata={
        "help": "class-balanced training subset size per class", "none": "every training image",
        "flag": "--train-per-class", "commands": DATA, "checkpoint": True})
    test_per_class: int | None = field(default=None, metadata={
        "help": "class-balanced test subset size per class (cheaper evaluation)", "none": "every test image",
        "flag": "--test-per-class", "commands": DATA, "checkpoint": True})
    holdout_per_class: int | None = field(default=None, metadata={
        "help": "training images per class never trained on (the field's validation split)"})
    download: bool = field(default=True, metadata={
        "help": "never fetch a missing dataset", "flag": "--no-download", "commands": DATA})
    stream: bool = field(default=False, metadata={
        "help": "read images per batch from where they are kept (your files, host memory) instead of holding "
                "them on the device: data larger than memory; the same results, slower",
        "flag": "--stream", "commands": DATA})
    flip: bool | None = field(default=None, metadata={
        "help": "augmentation's horizontal flip", "none": "the dataset's own (digits no, CIFAR and files yes)"})

    @property
    def class_wise(self) -> bool:
        """Whether the request forgets whole classes (the scenario says: class, or sequential class requests)."""
        return get_scenario(self.scenario).class_wise(self)


@dataclass
class RecipeConfig:
    """How the original model (and the exact Retrain baseline) is trained.

    Fields left at None take the model family's default (methods.resolve_recipe): SGD momentum 0.9,
    lr 0.1, weight decay 5e-4, batch 128 for ResNets (the field's recipe); AdamW lr 3e-3, weight decay
    0.05, batch 32 with a linear warm-up over a tenth of the epochs for ViTs, which do not train from scratch
    under plain SGD at lr 0.1 (3e-3 measured best of 1e-3, 2e-3, 3e-3 on digits; with 2 warm-up epochs instead
    of 6 one seed in three stalled at 91 %: methods.base.VIT_WARMUP_SHARE). Both reach at least 96 % test
    accuracy on digits in the cpu preset's 60 epochs, every seed 0-2 (the ViT at batch 128: 79 % after 30
    epochs, 96 % after 100).
    """

    epochs: int = field(default=15, metadata={
        "help": "epochs of the original model and of Retrain", "flag": "--pretrain-epochs",
        "commands": ("reproduce", "train", "unlearn", "search")})
    optimizer: str | None = field(default=None, metadata={
        "help": "sgd | adam | adamw", "none": "the family's (ResNet sgd, ViT adamw)"})
    lr: float | None = field(default=None, metadata={"help": "learning rate", "none": "the family's"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float | None = field(default=None, metadata={"help": "weight decay", "none": "the family's"})
    batch_size: int | None = field(default=None, metadata={
        "help": "batch size", "none": "the family's (ResNet 128, ViT 32)"})
    warmup_epochs: float | None = field(default=None, metadata={
        "help": "linear warm-up epochs", "none": "the family's (ResNet 0, ViT a tenth of the epochs)"})
    augment: bool = field(default=True, metadata={"help": "random crops and flips"})


@dataclass
class UnlearnConfig:
    """The unlearning phase shared by finetune, prune-finetune, lora and prunelora (paper: Adam 1e-3)."""

    epochs: list[int] = field(default_factory=lambda: [5, 10], metadata={
        "help": "unlearning budgets evaluated in one run", "flag": "--epochs", "commands": UNLEARNING,
        "search": ("int", 1, 20)})
    optimizer: str = field(default="adam", metadata={"help": "sgd | adam | adamw"})
    lr: float = field(default=1e-3, metadata={
        "help": "learning rate of the retain-only methods; forget-aware methods take their paper's, set with "
                "--set method_args.NAME.lr=...", "flag": "--lr", "commands": UNLEARNING})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay"})
    batch_size: int = field(default=128, metadata={"help": "batch size"})
    augment: bool = field(default=False, metadata={"help": "augment (the paper's code unlearns without)"})
    prune_amount: float = field(default=0.5, metadata={
        "help": "share of output channels pruned per chosen layer (L2 norm)", "flag": "--prune-amount",
        "commands": UNLEARNING})
    prune_score: str = field(default="l2", metadata={
        "help": "which channels go: the smallest L2 norm (the paper's) | saliency: the least salient to the forget "
                "set's loss (|gradient x weight|, forget-aware)", "flag": "--prune-score", "commands": UNLEARNING,
        "choices": PRUNE_SCORES})
    prune_mode: str = field(default="auto", metadata={
        "help": "auto (remove where the model written back in its own shapes is exact: conv nets; else mask) | "
                "mask (the paper's: zeroed rows in dense tensors, slower) | remove (channels physically taken out, "
                "torch-pruning)", "flag": "--prune-mode",
        "commands": UNLEARNING, "choices": PRUNE_MODES})
    keep_sparsity: bool = field(default=False, metadata={
        "help": "mask the LoRA update of pruned channels, so merged weights keep the pruned structure",
        "flag": "--keep-sparsity", "commands": UNLEARNING})
    lora_r: int | None = field(default=None, metadata={
        "help": "LoRA rank", "none": "the model's (ResNet 8, ViT 16)", "flag": "--lora-r", "commands": UNLEARNING})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha", "none": "2 * r"})
    lora_dropout: float | None = field(default=None, metadata={
        "help": "LoRA dropout", "none": "the model's (ResNet 0.1, ViT 0.0)"})
    lora_dropout_on: str = field(default="input", metadata={
        "help": "where a conv adapter's dropout acts: input (PEFT's, on the layer's input) | rank (on the adapter's "
                "r channels: cheaper on 1 x 1 convs, the same expectation, not PEFT's training distribution)",
        "choices": LORA_DROPOUT_PLACES})
    cache_prefix: bool = field(default=True, metadata={
        "help": "reuse the frozen prefix's activations where that is exact"})
    prune_layers: str | None = field(default=None, metadata={
        "help": "regex over module names", "none": "the model's own plan (the paper's layers)"})
    lora_layers: str | None = field(default=None, metadata={
        "help": "regex over module names", "none": "the model's own plan"})
    until_forget_acc: float | None = field(default=None, metadata={
        "help": "stop at the first epoch whose forget-set accuracy is at most X %", "none": "every epoch",
        "flag": "--until-forget-acc", "commands": ("unlearn",), "group": "", "metavar": "X"})


@dataclass
class EvidenceConfig:
    """How each model is measured beyond UA, RA and TA. Evaluation only: changing these on a finished
    run re-evaluates its saved models and never retrains them (they are not part of a run's identity)."""

    mia_protocol: str = field(default="balanced", metadata={
        "help": "the membership attack's protocol: balanced draws seeded shadow samples with a hold-out, liu is "
                "the field's reference (Unlearn-Sparse's SVC_MIA)", "flag": "--mia-protocol", "commands": EVIDENCE,
        "choices": "mia_protocols"})
    mia_draws: int = field(default=5, metadata={
        "help": "shadow draws per attack, reported as mean ± std", "flag": "--mia-draws", "commands": EVIDENCE})
    challenge: bool = field(default=True, metadata={
        "help": "the NeurIPS 2023 challenge's loss attack, forget vs unseen"})
    probe: bool = field(default=True, metadata={"help": "linear probe on the penultimate features"})
    relearn: bool = field(default=True, metadata={"help": "relearn time"})
    relearn_share: float = field(default=0.1, metadata={"help": "share of the forget set finetuned on"})
    relearn_lr: float = field(default=0.01, metadata={"help": "full-batch SGD with momentum 0.9"})
    relearn_max_steps: int = field(default=50, metadata={"help": "relearn steps at most"})
    ulira: int = field(default=0, metadata={
        "help": "U-LiRA with K shadow pairs (at least 2; 0: off): K originals, each unlearned and retrained",
        "flag": "--ulira", "commands": ("reproduce",), "metavar": "K"})


@dataclass
class RunConfig:
    """Everything a run is: precedence, lowest first, dataclass defaults < preset < protocol < YAML < flags."""

    data: DataConfig = field(default_factory=DataConfig, metadata={"group": "data"})
    models: list[str] = field(default_factory=lambda: ["resnet18", "vit"], metadata={
        "help": "comma-separated", "flag": "--models", "commands": MODELS, "group": "models",
        "choices": "models"})
    model_args: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "per model name: its architecture arguments (width, depth, ...)", "none": "the model registry's"})
    methods: list[str] = field(default_factory=lambda: ["paper"], metadata={
        "help": "comma-separated", "flag": "--methods", "commands": ("reproduce", "search"), "group": "methods",
        "choices": "methods"})
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "per method or objective: its settings (lr, alpha, ...)"})
    pretrain: RecipeConfig = field(default_factory=RecipeConfig, metadata={"group": "pre-training"})
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig, metadata={"group": "unlearning"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={
        "help": "several seeds, e.g. 0,1,2", "flag": "--seeds", "commands": DATA, "group": "data",
        "single": ("--seed", "one seed"), "checkpoint": True})
    device: str = field(default="auto", metadata={
        "help": "auto | cpu | cuda | cuda:N", "flag": "--device", "commands": RUNS})
    precision: str = field(default="fp32", metadata={
        "help": "fp32 | bf16 (CUDA autocast)", "flag": "--precision", "commands": TRAINING, "choices": PRECISIONS})
    channels_last: bool = field(default=False, metadata={
        "help": "convolutions in channels-last memory format (faster on tensor-core GPUs)",
        "flag": "--channels-last", "commands": ("bench",), "group": "benchmark"})
    preset: str = field(default="cpu", metadata={
        "help": "sizes (also $PRUNELORA_PRESET where no flag or file names one)", "flag": "--preset",
        "commands": RUNS, "choices": "presets"})
    protocol: str | None = field(default=None, metadata={
        "help": "a published setting in one flag (reduced size without CUDA)", "none": "none",
        "flag": "--protocol", "commands": TRAINING, "choices": "protocols"})
    out: str | None = field(default=None, metadata={
        "help": "output folder", "none": "the command's own folder under runs/", "flag": "--out", "commands": RUNS})
    threads: int | None = field(default=None, metadata={
        "help": "torch threads", "none": "the cores available to this process", "flag": "--threads",
        "commands": RUNS})
    eval_batch_size: int = field(default=256, metadata={
        "help": "evaluation batch (data.batches.EVAL_BATCH: 3x faster than 1024 for a CPU forward, cache-sized)"})
    mia_max_per_side: int = field(default=MIA_MAX_PER_SIDE, metadata={
        "help": "balanced shadow sample cap for the attacks (RBF SVC cost ~ n^2)"})
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig, metadata={
        "group": "evidence (evaluation only: changing it re-evaluates a finished run, never retrains)"})

    def identity(self) -> dict[str, Any]:
        """What decides a run's trained models: everything but where it is written, how it computes (threads,
        memory layout, evaluation batch) and the evidence settings (evaluation only: a run re-evaluated with
        other evidence is the same run)."""
        identity = {k: v for k, v in to_dict(self).items()
                    if k not in ("out", "threads", "channels_last", "eval_batch_size", "evidence")}
        identity["data"] = {k: v for k, v in data_key(self.data).items() if k != "stream"}  # the same numbers either way
        identity["unlearn"] = {k: v for k, v in identity["unlearn"].items()
                               if k not in UNSET_UNLEARN or v != UNSET_UNLEARN[k]}
        return identity


# Data settings added after runs had fingerprints (request files): left out of a fingerprint while unset, so that a
# run without them keeps the fingerprints it had (its folder, stages and cached originals stay valid).
UNSET_DATA: dict[str, Any] = {"forget": None, "id_column": None, "allow_empty_class": False, "image_size": None}


# Unlearning settings added later, left out of a fingerprint at their defaults for the same reason.
UNSET_UNLEARN: dict[str, Any] = {"prune_score": "l2", "lora_dropout_on": "input"}


def data_key(data: DataConfig) -> dict[str, Any]:
    """The data settings as fingerprints read them: UNSET_DATA's fields only where they are set."""
    return {k: v for k, v in dataclasses.asdict(data).items() if k not in UNSET_DATA or v != UNSET_DATA[k]}


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the cache key of a trained model or a stage."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
