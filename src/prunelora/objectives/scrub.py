"""SCRUB (Kurmanji et al. 2023, "Towards unbounded machine unlearning").

The original model is a frozen teacher; the unlearned model is the student. In each of the first
`max_steps` epochs a max-step pass over the forget set raises the student's KL divergence from
the teacher; every epoch then a min-step pass over the retain set lowers
alpha * KL + gamma * CE. KL is the distillation loss at temperature T (scaled by T^2).
Defaults: the paper's code (SGD, lr 5e-4, momentum 0.9, weight decay 5e-4, retain batch 128,
forget batch 32, 2 max-step epochs, T = 4, alpha 0.001, gamma 0.99); its learning-rate decay at
epochs 3, 5, 9 is not applied.

Without augmentation the teacher's outputs are fixed per sample (it runs in eval mode), so they
are computed once at the start: no teacher forward in the training steps.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import EVAL_BATCH, ImageSet, eval_batches
from .base import Batch, Feed, Forward, Objective, PaperSGD, Progress


@dataclass
class ScrubArgs(PaperSGD):
    lr: float | None = 5e-4
    batch_size: int | None = 128
    forget_batch_size: int = 32
    max_steps: int = 2  # epochs that begin with a max-step pass over the forget set
    temperature: float = 4.0
    alpha: float = 0.001  # weight of the KL term in min-steps
    gamma: float = 0.99  # weight of the cross-entropy in min-steps


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at temperature T, summed over classes, averaged over the batch, times T^2."""
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="sum") * temperature**2 / student.shape[0]


@torch.no_grad()
def outputs_of(model: nn.Module, data: ImageSet, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    return torch.cat([model(x) for x, _ in eval_batches(data, batch_size)]) if len(data) else torch.zeros(0)


class Scrub(Objective):
    name = "scrub"
    label = "SCRUB"
    uses_forget = True
    Args = ScrubArgs

    def draws_from(self) -> tuple[str, ...]:
        return ("retain", "forget")

    def start(self, model: nn.Module, feed: Feed) -> None:
        if self.original is None:
            raise ValueError("scrub needs the original model as its teacher")
        self.teacher = copy.deepcopy(self.original).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.fixed: dict[str, torch.Tensor] = {}
        if not feed.augmentation:
            self.fixed = {name: outputs_of(self.teacher, feed.sets[name]) for name in self.draws_from()}

    def teacher_logits(self, name: str, batch: Batch) -> torch.Tensor:
        if name in self.fixed:
            return self.fixed[name][batch.index]
        with torch.no_grad():
            return self.teacher(batch.inputs)

    def steps_per_epoch(self, feed: Feed) -> int:
        return feed.steps("retain") + feed.steps("forget", self.args.forget_batch_size)

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        a, T = self.args, self.args.temperature
        if progress.epoch <= a.max_steps:
            for batch in feed.epoch("forget", a.forget_batch_size):
                yield -distill_kl(forward(batch.inputs), self.teacher_logits("forget", batch), T), len(batch.labels)
        for batch in feed.epoch("retain"):
            logits = forward(batch.inputs)
            loss = (a.gamma * F.cross_entropy(logits, batch.labels)
                    + a.alpha * distill_kl(logits, self.teacher_logits("retain", batch), T))
            yield loss, len(batch.labels)
