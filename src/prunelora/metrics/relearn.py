"""Relearn time (as in SCRUB): how quickly a little of the forgotten data brings it back.

Knowledge that was hidden rather than removed returns after a few steps of finetuning; a model
that never learned the data (Retrain) needs as many steps as learning it afresh. From each model,
a copy is finetuned on a small fixed share of the forget set with a fixed recipe (full-batch SGD,
the same for every method) and the steps are counted until its accuracy on the rest of the forget
set reaches half the original model's. The count is read beside Retrain's: fewer steps than
Retrain's spread allows means the forgotten data is still within easy reach.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..data import ImageSet
from ..train import RELEARN_HINT, OptimSettings, fit, unmetered
from .entry import Evidence, EvidenceInputs
from .outputs import set_accuracy
from .spec import spec_of


@dataclass(frozen=True)
class RelearnRecipe:
    share: float = 0.1  # of the forget set, finetuned on (at least one sample)
    lr: float = 0.01  # SGD, momentum 0.9, no weight decay, full batch: one step per epoch
    max_steps: int = 50  # the count is censored here (relearn_reached False)
    eval_cap: int = 256  # forget samples the accuracy is measured on (the rest of the set, capped)


def relearn_parts(forget: ImageSet, share: float, seed: int, eval_cap: int) -> tuple[ImageSet, ImageSet]:
    """The seeded relearning share of the forget set and the samples accuracy is measured on (the rest)."""
    order = np.random.default_rng([seed, 0x2E1EA2]).permutation(len(forget))
    n = min(len(forget) - 1, max(1, math.ceil(share * len(forget))))
    return forget.subset(order[:n]), forget.subset(order[n:n + eval_cap])


def steps_until(accuracies, target: float, max_steps: int) -> tuple[int, bool]:
    """The first step whose accuracy reaches the target, from a sequence of accuracies after 0, 1, 2, ... steps.

    Returns (steps, reached); (max_steps, False) when the target is not reached within max_steps.
    """
    for step, acc in enumerate(accuracies):
        if step > max_steps:
            break
        if acc >= target:
            return step, True
    return max_steps, False


def relearn_steps(model: nn.Module, forget: ImageSet, original: nn.Module, seed: int,
                  recipe: RelearnRecipe = RelearnRecipe()) -> dict[str, float]:
    """relearn_steps (censored at max_steps), relearn_reached, relearn_target (% accuracy sought).

    The target is half of `original`'s accuracy on the samples the accuracy is measured on.
    """
    if len(forget) < 2:
        return {"relearn_steps": float("nan"), "relearn_reached": False, "relearn_target": float("nan")}
    relearn, measured = relearn_parts(forget, recipe.share, seed, recipe.eval_cap)
    target_acc = 0.5 * set_accuracy(original, measured)
    student = copy.deepcopy(model)
    for param in student.parameters():
        param.requires_grad_(True)

    accuracies = [set_accuracy(student, measured)]

    def on_epoch_end(epoch: int, history) -> bool:  # one epoch is one full-batch step
        accuracies.append(set_accuracy(student, measured))
        return accuracies[-1] >= target_acc

    if accuracies[0] < target_acc:
        settings = OptimSettings(optimizer="sgd", lr=recipe.lr, momentum=0.9, batch_size=len(relearn))
        with unmetered():  # evidence, never the method's cost
            fit(student, relearn, settings, recipe.max_steps, seed=seed, on_epoch_end=on_epoch_end,
                progress=False, desc="relearn time", hint=RELEARN_HINT)
    steps, reached = steps_until(accuracies, target_acc, recipe.max_steps)
    return {"relearn_steps": steps, "relearn_reached": reached, "relearn_target": target_acc}


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    e = inputs.evidence
    return relearn_steps(inputs.model, inputs.splits.forget_train, inputs.original, inputs.seed,
                         RelearnRecipe(e.relearn_share, e.relearn_lr, e.relearn_max_steps))


ENTRY = Evidence("relearn", _compute, (spec_of("relearn_steps"),), model_level=True,
                 enabled=lambda inputs: inputs.evidence.relearn and inputs.original is not None, timing="relearn",
                 one_blas_thread=False, prefixes=("relearn_",))
