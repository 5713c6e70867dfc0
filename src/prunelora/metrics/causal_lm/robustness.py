"""Whether forgotten facts come back: under another prompt format, a paraphrased question, or a little relearning.

An unlearned model can stop answering in the format it was unlearned in and still answer in another, or give
the facts back after a few steps of finetuning on some of them (targeted relearning attacks: Hu et al. 2024,
"Jogging the memory of unlearned LLMs"; Lynch et al. 2024, "Eight methods to evaluate robust unlearning").
Measured per example on the forget set, for every model of a run (Retrain's too, the reference "hides" is read
against), and exported with the other measures:

- other formats: the plain cue, a bare "{question} " and the tokenizer's chat template where it has one (the
  run's own format left out), and the paraphrased questions where the data has them;
- the relearning attack: a copy of the model is finetuned for `steps` full-batch steps (AdamW at `lr`, the
  answer tokens' NLL, through train.fit) on a seeded half of the forget set, and the other half is measured.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...data.text.examples import Example
from ...data.text.tokens import PLAIN_CUE, encode
from ...objectives.causal_lm.retain import RetainFinetune
from ...train import OptimSettings, fit, unmetered

BARE = "{question} "
CHAT = "chat"  # the tokenizer's chat template (a template of None with one)


@dataclass(frozen=True)
class RelearnAttack:
    steps: int = 10  # full-batch finetuning steps on half of the forget set (0: off)
    lr: float = 1e-3  # AdamW, no weight decay
    seed: int = 0


def other_formats(tokenizer, template: str | None) -> dict[str, str | None]:
    """The prompt formats the forget set is also measured in: the plain cue, a bare question and the chat template
    (where the tokenizer has one), but the run's own (template None means the chat template, else the cue)."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    own = template if template is not None else (CHAT if chat else PLAIN_CUE)
    formats: dict[str, str | None] = {"cue": PLAIN_CUE, "bare": BARE}
    if chat:
        formats["chat"] = None  # prompt_text applies the chat template where the template is None
    return {name: form for name, form in formats.items()
            if (CHAT if form is None else form) != own}


def paraphrased(examples: list[Example]) -> list[Example]:
    """The examples asked with their paraphrased questions ([] unless every one has one)."""
    if not examples or not all(ex.paraphrased_question for ex in examples):
        return []
    return [dataclasses.replace(ex, prompt=ex.paraphrased_question) for ex in examples]


def attack_halves(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """(the half relearned, the half measured): a seeded split, at least one example each ([] when fewer than 2)."""
    if len(examples) < 2:
        return [], []
    order = np.random.default_rng([seed, 0x7E1EA2]).permutation(len(examples))
    half = len(examples) // 2
    return [examples[i] for i in sorted(order[:half])], [examples[i] for i in sorted(order[half:])]


def relearned(model: nn.Module, tokenizer, examples: list[Example], attack: RelearnAttack, max_length: int,
              device: torch.device, template: str | None) -> tuple[nn.Module | None, list[Example]]:
    """A copy of `model` finetuned on one half of `examples` (None when the attack is off or too few examples),
    and the other half, to be measured on it."""
    train, held = attack_halves(examples, attack.seed)
    if attack.steps < 1 or not train:
        return None, []
    student = copy.deepcopy(model)
    for param in student.parameters():
        param.requires_grad_(True)
    data = encode(tokenizer, train, max_length, device, template)
    settings = OptimSettings(optimizer="adamw", lr=attack.lr, weight_decay=0.0, batch_size=len(train))
    with unmetered():  # evidence, never the method's cost
        fit(student, data, settings, attack.steps, seed=attack.seed, objective=RetainFinetune(), progress=False,
            desc="relearning attack", hint="lower the attack's learning rate (--set evidence.relearn_lr=...)")
    return student.eval(), held


def robustness_settings(evidence, tokenizer, template: str | None,
                        seed: int) -> tuple[dict[str, str | None] | None, RelearnAttack | None]:
    """What the robustness measures take from a run's evidence settings (LMEvidenceConfig): the other prompt
    formats and the relearning attack (None where switched off). The run and `verify` both read them here."""
    formats = other_formats(tokenizer, template) if evidence.formats else None
    attack = RelearnAttack(evidence.relearn_steps, evidence.relearn_lr, seed) if evidence.relearn_steps else None
    return formats, attack
