"""What one training step optimises, and on which data: the objective half of a method.

A method is a surgery (what is done to the model: nothing, pruning, LoRA, both) times an
objective (the loss of one step and the sets it draws from). The objective never owns a loop:
train.fit() asks it for the steps of each epoch, each a (loss, samples) pair, and runs the
optimiser, the schedule and the surgery's constraints itself. Adding an objective is one file in
this package and one registry line.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..data import ImageSet, shuffled_batches, to_float
from ..errors import UserError

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Recipe:
    """Optimiser settings of an objective; None takes the run's unlearn.* value (the paper's Adam 1e-3, no
    augmentation). Every field can be set per method: --set method_args.<method>.<field>=..."""

    optimizer: str | None = None  # sgd | adam | adamw
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    augment: bool | None = None  # random crop (+ flip where the images allow it), as the reference trains
    nesterov: bool = False  # no reference uses Nesterov momentum; a user may ask for it

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum is not None and self.momentum <= 0:
            raise UserError("nesterov needs a momentum above 0 (set momentum too, or nesterov=false)")


RECIPE_FIELDS = frozenset(f.name for f in fields(Recipe))


@dataclass
class PaperSGD(Recipe):
    """The optimiser of the field's CIFAR-10 unlearning code (Liu et al. 2023, SalUn, SCRUB): SGD with heavy-ball
    momentum 0.9 (no Nesterov), weight decay 5e-4; each objective sets its own lr, batch size and augmentation."""

    optimizer: str | None = "sgd"
    momentum: float | None = 0.9
    weight_decay: float | None = 5e-4


@dataclass
class Batch:
    index: torch.Tensor  # positions in the set (for per-sample targets such as a teacher's logits)
    inputs: torch.Tensor  # images as the model (or the cached suffix) takes them
    labels: torch.Tensor
    size: int = 0  # rows of the whole batch: a draw per row is the same on every rank under torchrun
    rows: slice = field(default_factory=lambda: slice(None))  # this rank's rows of it (all outside torchrun)


class Feed:
    """Shuffled on-device batches of the sets a run may draw from ("retain", "forget", and any an
    objective adds), over the cached prefix's features where fit() built them.

    Every draw comes from one seeded generator, so a run is reproducible end to end.
    """

    def __init__(self, sets: dict[str, ImageSet], batch_size: int, augmentation: bool,
                 generator: torch.Generator, flip: bool = True) -> None:
        self.sets = {k: v for k, v in sets.items() if v is not None}
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.flip = flip  # the augmentation's horizontal flip (off for digits)
        self.generator = generator
        self.features: dict[str, torch.Tensor] = {}  # name -> cached prefix output, in set order

    def add(self, name: str, data: ImageSet) -> None:
        self.sets[name] = data

    def size(self, name: str) -> int:
        return len(self.sets[name]) if name in self.sets else 0

    def steps(self, name: str, batch_size: int | None = None) -> int:
        return math.ceil(self.size(name) / (batch_size or self.batch_size))

    def epoch(self, name: str, batch_size: int | None = None) -> Iterator[Batch]:
        """One shuffled pass over the set; the last partial batch is kept."""
        data = self.sets[name]
        for idx, inputs, labels in shuffled_batches(data, batch_size or self.batch_size, self.generator,
                                                    self.augmentation, self.features.get(name), self.flip):
            total, rows = len(idx), slice(None)
            if distributed.active() and total >= distributed.world_size():
                rows = distributed.shard_slice(total)  # every rank draws the same global batch, keeps its shard
                idx, labels = idx[rows], labels[rows]
                inputs = distributed.mark_shard(inputs[rows], total, rows.start)
            yield Batch(idx, inputs, labels, total, rows)

    def forever(self, name: str, batch_size: int | None = None, replay: bool = False) -> Iterator[Batch]:
        """Passes without end (a second set cycled beside the one that defines the epoch): each pass
        shuffled anew, or with replay the first pass's batches again and again (itertools.cycle over a
        loader, as SCRUB's train_negrad does)."""
        if not replay:
            while True:
                yield from self.epoch(name, batch_size)
        first = []
        for batch in self.epoch(name, batch_size):
            first.append(batch)
            yield batch
        while first:
            yield from first


@dataclass
class Progress:
    """Where a step is in the run (for schedules inside an objective: l1's decaying weight, SCRUB's max-steps)."""

    epoch: int  # 1-based
    epochs: int


class Objective:
    """Base: subclasses set name, label, Args, and implement steps().

    Instances are made per run (they may hold state: random labels, a saliency mask, a teacher).
    """

    name: str = ""
    label: str = ""
    reference: str = ""  # the code it follows (repository, file, commit), shown in the docs' tables
    # The settings `prunelora search` may try, by Args field: ("log" | "float" | "int", low, high) or
    # ("choice", option, ...). Declared here, beside the defaults; the search code holds no range.
    space: dict[str, tuple] = {}
    uses_forget: bool = False  # True: the forget set must be given
    Args: type[Recipe] = Recipe
    # True: a schedule over the run's length (l1-sparse's decaying weight), so each evaluation budget is a run
    # of its own from the same start and seed (runner.run_method), not a snapshot midway through the longest.
    schedule_spans_budget: bool = False

    def __init__(self, args: Recipe | None = None, original: nn.Module | None = None) -> None:
        self.args = args if args is not None else self.Args()
        self.original = original  # the model before unlearning (SCRUB's teacher); never trained

    def data(self, feed: Feed, model: nn.Module) -> None:
        """Add the sets this objective draws from (before fit caches their prefix features)."""

    def start(self, model: nn.Module, feed: Feed) -> None:
        """Once before the first step (saliency, a teacher's outputs); counted in the run's setup time."""

    def steps_per_epoch(self, feed: Feed) -> int:
        return feed.steps("retain")

    def steps(self, forward: Forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        """Yield (loss, samples) per optimiser step of one epoch."""
        raise NotImplementedError

    def after_step(self) -> None:
        """A constraint after every optimiser step (SalUn's frozen weights)."""

    def lr_factor(self, epoch: int) -> float:
        """A factor on the learning rate through this (1-based) epoch (SCRUB's step decay); fit() multiplies it
        into its own schedule."""
        return 1.0

    def batch_sizes(self, batch_size: int) -> dict[str, int]:
        """The batch size of each pass steps() makes, by set (the run's resolved settings)."""
        return {name: batch_size for name in self.draws_from()}

    def own_settings(self) -> dict[str, Any]:
        """The objective's own values beyond the optimiser recipe (alpha, temperature, variant, ...)."""
        return {f.name: getattr(self.args, f.name) for f in fields(self.args) if f.name not in RECIPE_FIELDS}

    def draws_from(self) -> tuple[str, ...]:
        """The sets steps() iterates through `forward` (fit caches their prefix features where it can)."""
        return ("retain",)


def cross_entropy_steps(forward: Forward, feed: Feed, name: str,
                        sign: float = 1.0) -> Iterator[tuple[torch.Tensor, int]]:
    """One pass over a set, each step sign * cross-entropy (descent, or ascent with sign -1)."""
    for batch in feed.epoch(name):
        yield sign * F.cross_entropy(forward(batch.inputs), batch.labels), len(batch.labels)


def num_classes(model: nn.Module, data: ImageSet) -> int:
    """The classifier's output width, from one forward pass in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        width = int(model(to_float(data.images[:1])).shape[1])
    model.train(was_training)
    return width


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
