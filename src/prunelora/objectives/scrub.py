"""SCRUB (Kurmanji et al. 2023, "Towards unbounded machine unlearning").

The original model is a frozen teacher; the unlearned model is the student. In each of the first
`max_steps` epochs a max-step pass over the forget set raises the student's KL divergence from
the teacher; every epoch then a min-step pass over the retain set lowers
alpha * KL + gamma * CE. KL is the distillation loss at temperature T (scaled by T^2).
Follows meghdadk/SCRUB: the steps of `thirdparty/repdistiller/helper/loops.py` `train_distill` (HEAD
98ffb119, without the release's parameter smoothing, a no-op at these settings), the epoch loop and the
settings of `large_scale_unlearning.ipynb` (HEAD; the README's large-scale CIFAR-10 experiment): forget
batch 512 and retain batch 256 (the loaders it uses; its declared 32 / 128 are unused), 2 max-step
epochs, SGD lr 5e-4, heavy-ball momentum 0.9 (no Nesterov), weight decay 5e-4, T = 4, alpha 0.001,
gamma 0.99, no augmentation. Its lr decay, `helper/util.py` `adjust_learning_rate`, applies at every
budget: through 1-based epoch e the lr is lr * lr_decay_rate ** (milestones in lr_decay_epochs [3, 5, 9]
that e exceeds), so the reference's 3 epochs run at constant lr and a 10-epoch budget ends at lr * 1e-3.
Named options (--set method_args.scrub.<name>=...): lr_decay_epochs=[] (no decay), augment=true.

Without augmentation the teacher's outputs are fixed per sample (it runs in eval mode), so they
are computed once at the start: no teacher forward in the training steps.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import EVAL_BATCH, ImageSet, eval_batches
from ..errors import UserError
from .base import Batch, Feed, Forward, Objective, PaperSGD, Progress


@dataclass
class ScrubArgs(PaperSGD):
    lr: float | None = 5e-4
    batch_size: int | None = 256  # the retain batch
    augment: bool | None = False
    forget_batch_size: int = 512
    max_steps: int = 2  # epochs that begin with a max-step pass over the forget set
    temperature: float = 4.0
    alpha: float = 0.001  # weight of the KL term in min-steps
    gamma: float = 0.99  # weight of the cross-entropy in min-steps
    lr_decay_epochs: list[int] = field(default_factory=lambda: [3, 5, 9])  # the lr decays after each
    lr_decay_rate: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.lr_decay_rate <= 1.0:
            raise UserError(f"scrub lr_decay_rate must lie in (0, 1], got {self.lr_decay_rate}")


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
    reference = "meghdadk/SCRUB thirdparty/repdistiller/helper/loops.py train_distill (98ffb119)"
    space = {"lr": ("log", 1e-4, 1e-2), "max_steps": ("int", 1, 5), "alpha": ("log", 1e-4, 1e-1)}  # what `prunelora search` may set (its Args fields)
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

    def lr_factor(self, epoch: int) -> float:
        """adjust_learning_rate: the rate to the number of milestones the (1-based) epoch exceeds."""
        return self.args.lr_decay_rate ** sum(epoch > milestone for milestone in self.args.lr_decay_epochs)

    def batch_sizes(self, batch_size: int) -> dict[str, int]:
        return {"retain": batch_size, "forget": self.args.forget_batch_size}

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
