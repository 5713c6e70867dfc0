"""The causal-LM task's settings: typed dataclasses, each field with its help and, where it has one, its flag.

    prunelora reproduce --task causal-lm                         # the embedded benchmark, every method
    prunelora unlearn --task causal-lm --model hf:DIR --dataset train.jsonl --forget forget.jsonl

Precedence, lowest first: dataclass defaults < YAML (--config) < flags < --set. The flags are generated from
the metadata exactly as the image task's (flags.py): ``help``, ``flag``, ``commands``, ``group``, ``none``.
The optimiser defaults are this benchmark's (a small model trained from scratch on 2 CPU cores); each
objective's own values (beta, alpha, ...) come from its paper or open-unlearning's configs (its docstring
says which) and are set with --set method_args.<objective>.<field>=....
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.text.tokens import check_template
from ..errors import UserError
from . import fingerprint
from .parsing import build, load_yaml, merge

RUNS = ("reproduce", "unlearn", "search")
ALL = ("reproduce", "unlearn", "plan", "search")
FAMILIES = ("llama", "gpt2", "qwen2", "phi", "mistral")
PRUNE_TARGETS = ("mlp", "heads", "mlp+heads")
PRUNE_SCORES = ("magnitude", "saliency")
PARALLEL = ("data", "fsdp")  # under torchrun: data parallelism, or FSDP (lm/shard.py)
LORA_TARGETS = ("all", "attention", "mlp")


@dataclass
class LMDataConfig:
    """The examples and the request."""

    dataset: str = field(default="people", metadata={
        "help": "a .jsonl of question/answer pairs (TOFU's fields) or of plain text; 'people': the embedded "
                "benchmark of fictitious people", "flag": "--dataset", "commands": ALL, "group": "data"})
    forget: str | None = field(default=None, metadata={
        "help": "what to forget: a file of ids (one a line), or a .jsonl of the forget examples themselves",
        "none": "people: --forget-ratio of the people", "flag": "--forget", "commands": ALL,
        "group": "what to forget"})
    forget_ratio: float = field(default=0.1, metadata={
        "help": "the embedded benchmark: the share of its people forgotten (0.01, 0.05, 0.1 as TOFU)",
        "flag": "--forget-ratio", "commands": ALL, "group": "what to forget"})
    holdout: str | None = field(default=None, metadata={
        "help": "a .jsonl of examples never trained on, in the dataset's format (membership attacks, PrivLeak)",
        "none": "people: its held-out people; else none (the attacks are not run)", "flag": "--holdout",
        "commands": RUNS, "group": "data"})
    id_field: str = field(default="id", metadata={
        "help": "the field naming an example (else its line number, from 0)"})
    question_field: str = field(default="question", metadata={"help": "the prompt's field (question/answer data)"})
    answer_field: str = field(default="answer", metadata={"help": "the answer's field: loss is on its tokens only"})
    text_field: str = field(default="text", metadata={"help": "plain-text data: the field holding the text"})
    messages_field: str = field(default="messages", metadata={
        "help": "conversational data: the field holding each example's messages (role and content; the last one "
                "the assistant's answer, the one before it the user's question, any before that the context the "
                "chat template renders)"})
    prompt_template: str | None = field(default=None, metadata={
        "help": "your model's prompt format: the text before the answer, {question} where the question goes (e.g. "
                "\"{question} \" for question + ' ' + answer)", "none": "the tokenizer's chat template where it has "
                "one, else \"Question: {question}\\nAnswer: \"", "flag": "--prompt-template", "commands": ALL,
        "group": "data", "metavar": "TEMPLATE"})
    max_new_tokens: int = field(default=200, metadata={
        "help": "greedy answers are generated up to this many new tokens for ROUGE-L (open-unlearning's 200; "
                "lower it for speed)", "flag": "--max-new-tokens", "commands": RUNS, "group": "data"})
    max_length: int = field(default=128, metadata={
        "help": "tokens per example (prompt + answer); a longer example is refused", "flag": "--max-length",
        "commands": ALL, "group": "data"})
    eval_retain: int = field(default=200, metadata={
        "help": "retain examples evaluated (a seeded draw; generation is the costly part)"})
    people: int = field(default=100, metadata={"help": "the embedded benchmark: people trained on"})
    questions: int = field(default=5, metadata={"help": "the embedded benchmark: questions per person"})
    holdout_people: int = field(default=20, metadata={"help": "the embedded benchmark: people never trained on"})
    perturbed: int = field(default=3, metadata={"help": "the embedded benchmark: wrong answers per question"})


@dataclass
class LMModelConfig:
    """The model: the user's (hf:DIR) or the embedded benchmark's small model, built from a config."""

    model: str | None = field(default=None, metadata={
        "help": "hf:DIR, a save_pretrained folder of a causal LM and its tokenizer", "none": "a small model of "
                "--family trained from scratch on the dataset (the embedded benchmark)", "flag": "--model",
        "commands": ALL, "group": "model"})
    family: str = field(default="llama", metadata={
        "help": "the embedded model's architecture: " + " | ".join(FAMILIES), "flag": "--family",
        "commands": ("reproduce",), "group": "model"})
    hidden: int = field(default=256, metadata={"help": "the embedded model: hidden width"})
    layers: int = field(default=4, metadata={"help": "the embedded model: decoder layers"})
    heads: int = field(default=4, metadata={"help": "the embedded model: attention heads"})
    intermediate: int = field(default=768, metadata={"help": "the embedded model: MLP width"})


@dataclass
class LMTrainConfig:
    """Training the original and Retrain from scratch (the embedded benchmark; Retrain of a user's model)."""

    epochs: int = field(default=150, metadata={"help": "at most this many epochs; stops once memorised"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate (cosine, warm-up 5 epochs)"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    memorised: float = field(default=0.99, metadata={
        "help": "stop once this share of the answer tokens is predicted (greedy, teacher-forced)"})


@dataclass
class LMUnlearnConfig:
    """Every method's optimiser and surgery settings (one objective's own values: method_args)."""

    epochs: int = field(default=10, metadata={
        "help": "passes over the forget set (retain finetune: over the retain set)", "flag": "--epochs",
        "commands": RUNS, "group": "unlearning", "search": ("int", 1, 20)})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate, constant", "flag": "--lr",
                                             "commands": RUNS, "group": "unlearning"})
    lora_lr: float = field(default=1e-3, metadata={
        "help": "the learning rate of the LoRA methods (adapters start at zero and need a larger step)"})
    batch_size: int = field(default=8, metadata={"help": "forget (and retain) examples per step"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (open-unlearning: 0.01)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank", "flag": "--lora-r", "commands": ALL,
                                             "group": "unlearning"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_targets: str = field(default="all", metadata={
        "help": "the projections LoRA adapts: " + " | ".join(LORA_TARGETS) + ", or comma-separated module names"})
    prune_amount: float = field(default=0.3, metadata={
        "help": "share of the pruned units removed (MLP neurons, attention heads)", "flag": "--prune-amount",
        "commands": ALL, "group": "unlearning"})
    prune_targets: str = field(default="mlp", metadata={
        "help": "what pruning removes: " + " | ".join(PRUNE_TARGETS) + " (heads: architectures whose config "
                "states head_dim)", "flag": "--prune-targets", "commands": ALL, "group": "unlearning"})
    prune_score: str = field(default="magnitude", metadata={
        "help": "which units go: the smallest weights (the paper) or the least salient to the forget loss",
        "flag": "--prune-score", "commands": ALL, "group": "unlearning"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in the backward pass (less memory; LoRA's adapters still train)",
        "flag": "--gradient-checkpointing", "commands": RUNS, "group": "unlearning"})
    parallel: str = field(default="data", metadata={
        "help": "under torchrun: data (every rank holds the model; gradients averaged) | fsdp (torch FSDP2: "
                "parameters, gradients and optimiser state sharded over the ranks, one group per decoder block)",
        "flag": "--parallel", "commands": RUNS, "group": "unlearning"})


@dataclass
class LMEvidenceConfig:
    """Whether the forgetting holds (metrics/causal_lm/robustness.py). Measuring only: changing these on a
    finished run measures its saved models again, never retrains them (they are not part of a run's identity)."""

    formats: bool = field(default=True, metadata={
        "help": "also measure the forget set in other prompt formats and with paraphrased questions"})
    relearn_steps: int = field(default=10, metadata={
        "help": "the relearning attack: full-batch finetuning steps on half of the forget set (0: off)",
        "flag": "--relearn-steps", "commands": RUNS, "group": "evidence"})
    relearn_lr: float = field(default=1e-3, metadata={"help": "the relearning attack's AdamW learning rate"})


@dataclass
class LMConfig:
    """Everything a causal-LM run is (saved in results.json; its identity keys the cached original)."""

    data: LMDataConfig = field(default_factory=LMDataConfig, metadata={"group": "data"})
    model: LMModelConfig = field(default_factory=LMModelConfig, metadata={"group": "model"})
    pretrain: LMTrainConfig = field(default_factory=LMTrainConfig)
    unlearn: LMUnlearnConfig = field(default_factory=LMUnlearnConfig, metadata={"group": "unlearning"})
    evidence: LMEvidenceConfig = field(default_factory=LMEvidenceConfig, metadata={
        "group": "evidence (measuring only: changing it measures a finished run again, never retrains)"})
    methods: list[str] = field(default_factory=lambda: ["table"], metadata={
        "help": "comma-separated", "flag": "--methods", "commands": ALL, "group": "methods",
        "choices": "causal_lm_methods"})
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "per objective or method: its own values (beta, alpha, layer, ...)"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={
        "help": "several seeds, e.g. 0,1,2", "flag": "--seeds", "commands": RUNS, "group": "data",
        "single": ("--seed", "one seed")})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N", "flag": "--device",
                                                  "commands": RUNS})
    precision: str = field(default="fp32", metadata={
        "help": "fp32 | bf16 (bf16 weights and steps on CUDA only)", "flag": "--precision", "commands": RUNS})
    out: str = field(default="runs/causal-lm", metadata={"help": "output folder", "flag": "--out",
                                                         "commands": RUNS})
    force: bool = field(default=False, metadata={
        "help": "run even when the memorisation check finds that the original does not know the forget set in the "
                "prompt format (the results say so)", "flag": "--force", "commands": RUNS})
    preset: str = field(default="cpu", metadata={
        "help": "sizes: cpu (the benchmark, minutes on 2 cores) | smoke (seconds: tests and docs); also "
                "$PRUNELORA_PRESET", "flag": "--preset", "commands": RUNS})

    def identity(self) -> dict[str, Any]:
        """What decides the trained models: everything but where they are written, whether a failed
        memorisation check was overridden, and what only measuring reads (the answers' length cap: a finished
        run measured with another cap is measured again, never retrained)."""
        values = dataclasses.asdict(self)
        for name in ("out", "force", "evidence"):
            values.pop(name)
        values["data"].pop("max_new_tokens")
        if values["data"]["messages_field"] == "messages":  # added later: runs at its default keep their identity
            values["data"].pop("messages_field")
        return values


# Presets over the dataclass defaults (which are the cpu preset): YAML files beside the image task's, each
# starting with the command it is for.
PRESETS: dict[str, dict[str, Any]] = {path.stem: yaml.safe_load(path.read_text()) or {}
                                      for path in sorted((Path(__file__).parent / "presets" / "causal_lm").glob("*.yaml"))}

SECTIONS: dict[str, type] = {"data": LMDataConfig, "model": LMModelConfig, "pretrain": LMTrainConfig,
                             "unlearn": LMUnlearnConfig, "evidence": LMEvidenceConfig}


def resolve(yaml_path: str | None, flags: dict[str, Any]) -> LMConfig:
    """Defaults < YAML < flags (the caller merges --set into flags); unknown keys and bad values: one line."""
    given = merge(load_yaml(yaml_path), flags)
    preset = given.get("preset") or os.environ.get("PRUNELORA_PRESET") or "cpu"
    if preset not in PRESETS:
        raise UserError(f"--preset {preset}: the causal-LM task has the presets {', '.join(PRESETS)}")
    values = merge(merge(copy.deepcopy(PRESETS[preset]), given), {"preset": preset})
    sections = {}
    for name, cls in SECTIONS.items():
        value = values.pop(name, {})
        if not isinstance(value, dict):
            raise UserError(f"config: '{name}' must be a mapping of its fields")
        sections[name] = build(cls, value, name)
    config = dataclasses.replace(build(LMConfig, values), **sections)
    check(config)
    return config


def check(config: LMConfig) -> None:
    """Values no run can use: one line each, before anything is written."""
    u, d = config.unlearn, config.data
    if u.prune_targets not in PRUNE_TARGETS:
        raise UserError(f"--prune-targets {u.prune_targets}: choose {', '.join(PRUNE_TARGETS)}")
    if u.prune_score not in PRUNE_SCORES:
        raise UserError(f"--prune-score {u.prune_score}: choose {', '.join(PRUNE_SCORES)}")
    if u.parallel not in PARALLEL:
        raise UserError(f"--parallel {u.parallel}: choose {', '.join(PARALLEL)}")
    if not 0.0 < u.prune_amount < 1.0:
        raise UserError(f"--prune-amount {u.prune_amount}: give a share between 0 and 1 (exclusive)")
    if not 0.0 < d.forget_ratio < 1.0:
        raise UserError(f"--forget-ratio {d.forget_ratio}: give a share between 0 and 1 (exclusive)")
    if config.model.family not in FAMILIES:
        raise UserError(f"--family {config.model.family}: choose {', '.join(FAMILIES)}")
    if config.precision not in ("fp32", "bf16"):
        raise UserError(f"--precision {config.precision}: choose fp32 or bf16")
    for name, value in (("--epochs", u.epochs), ("--lora-r", u.lora_r), ("--max-length", d.max_length),
                        ("unlearn.batch_size", u.batch_size), ("pretrain.batch_size", config.pretrain.batch_size)):
        if value < 1:
            raise UserError(f"{name} {value}: give a positive number")
    if not config.seeds:
        raise UserError("--seeds: give at least one seed")
    if config.evidence.relearn_steps < 0 or not config.evidence.relearn_lr > 0:
        raise UserError(f"evidence.relearn_steps {config.evidence.relearn_steps} / relearn_lr "
                        f"{config.evidence.relearn_lr}: give steps >= 0 (0: off) and a positive learning rate")
    if d.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {d.max_new_tokens}: give a positive number")
    check_template(d.prompt_template)


def key(config: LMConfig, *parts: Any) -> str:
    """A short fingerprint of the run's identity and any further parts."""
    return fingerprint(config.identity(), *parts)
