"""The causal-LM objectives' shared half: token batches from the run's Feed, and per-example answer losses.

An LM objective is an objectives.Objective, so train.fit() runs it like any image objective (one loop: the
optimiser, schedule, divergence checks and torchrun's gradient averaging are fit's). An epoch is one pass
over its anchor set (the forget set for the forgetting objectives, as open-unlearning's ForgetRetainDataset
iterates; the retain set for retain finetuning); a second set is cycled beside it, one batch per step.

Two reductions, each as open-unlearning (commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a) reduces the term:
an NLL that is descended or ascended (retain finetuning, GA, GradDiff, the retain terms of NPO and SimNPO) is
token-weighted, the summed NLL of the batch's answer tokens over their count (`model(**inputs).loss` in
src/trainer/unlearn/grad_ascent.py, grad_diff.py; token_nll here); a loss defined per example (NPO's and
SimNPO's forget terms, RMU's activation distances) is the mean over the batch's examples. Under torchrun each
rank holds a shard of the global batch and train.fit scales the rank's loss by its share of the anchor batch's
rows before averaging gradients: a per-example mean over the anchor batch then gives the global batch's
gradient by itself, and global_mean gives every other term (a token mean; a per-example mean over the retain
batch) the single process's gradient too.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ... import distributed
from ...data.text.tokens import IGNORE, TokenSet
from ..base import Feed, Objective, Progress, Recipe


@dataclass
class LMRecipe(Recipe):
    """An LM objective's own values (its optimiser comes from the run's unlearn settings)."""


def token_batches(feed: Feed, name: str, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """One shuffled pass over a TokenSet (seeded by the run's generator); under torchrun this rank's rows of
    each global batch (every rank draws the same permutation)."""
    data: TokenSet = feed.sets[name]
    order = torch.randperm(len(data), generator=feed.generator).to(data.input_ids.device)
    for start in range(0, len(data), batch_size):
        index = order[start:start + batch_size]
        if distributed.active() and len(index) >= distributed.world_size():
            index = index[distributed.shard_slice(len(index))]
        yield data.rows(index)


def cycled(feed: Feed, name: str, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from token_batches(feed, name, batch_size)


def answer_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the summed negative log-likelihood of its answer tokens, and how many there are."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    if logits.dtype in (torch.float16, torch.bfloat16):  # the loss in full precision (bf16 on CUDA)
        logits = logits.float()
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    counts = (labels != IGNORE).sum(1)
    return nll.sum(1), counts


def mean_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean over examples of each one's mean answer-token NLL (a per-example measure; the objectives' NLL
    terms are token-weighted: token_nll)."""
    total, counts = answer_nll(model, batch)
    return (total / counts.clamp(min=1)).mean()


def global_mean(total: torch.Tensor, count: torch.Tensor | int, anchor_rows: int) -> torch.Tensor:
    """total / count over the global batch, as this rank's term of a loss that train.fit weights by the anchor
    batch's share of rows.

    In one process: total / count. Under torchrun, rank r holds total_r over count_r items (tokens, or examples
    of the retain batch) and s_r of the anchor batch's S rows; fit multiplies its loss by w_r = s_r * W / S
    (distributed.shard_weight) and averages the ranks' gradients (divides by W). Returning
    total_r * W / (w_r * sum_r count_r) makes that average sum_r total_r / sum_r count_r: the global batch's
    value, whether the ranks hold disjoint shards or (a batch smaller than the ranks) each the whole batch.
    """
    count = torch.as_tensor(count, dtype=torch.float64)
    if not distributed.active():
        return total / count.clamp(min=1).to(total.dtype)
    global_count = max(1.0, distributed.total(float(count)))
    undo = distributed.world_size() / distributed.shard_weight(anchor_rows)
    return total * (undo / global_count)


def token_nll(model: nn.Module, batch: dict[str, torch.Tensor], anchor_rows: int) -> torch.Tensor:
    """The batch's NLL for descent or ascent, token-weighted as open-unlearning's `model(**inputs).loss`: the
    summed NLL of all its answer tokens over their count (of the global batch under torchrun: global_mean;
    anchor_rows = this rank's rows of the step's anchor batch, by which fit weights the loss)."""
    total, counts = answer_nll(model, batch)
    return global_mean(total.sum(), counts.sum(), anchor_rows)


def rows(batch: dict[str, torch.Tensor]) -> int:
    """How many examples a batch holds (the anchor batch's: the samples fit weights the step's loss by)."""
    return len(batch["input_ids"])


class LMObjective(Objective):
    """Base of the causal-LM objectives: subclasses set name, label, Args, anchor and implement loss()."""

    anchor = "forget"  # the set one epoch passes over
    uses_retain = True  # cycles retain batches beside the anchor's
    Args = LMRecipe

    def __init__(self, args: Recipe | None = None, original: nn.Module | None = None) -> None:
        super().__init__(args, original)
        self.model: nn.Module | None = None

    @property
    def uses_forget(self) -> bool:  # type: ignore[override]
        return self.anchor == "forget"

    def prepare(self, model: nn.Module) -> None:
        """Before fit builds its optimiser: which weights train (RMU restricts them; the others keep all)."""

    def start(self, model: nn.Module, feed: Feed) -> None:
        self.model = model

    def finish(self) -> None:
        """After the last step (RMU removes its hooks)."""

    def steps_per_epoch(self, feed: Feed) -> int:
        return feed.steps(self.anchor)

    def draws_from(self) -> tuple[str, ...]:
        return (self.anchor, "retain") if self.uses_retain and self.anchor != "retain" else (self.anchor,)

    def steps(self, forward, feed: Feed, progress: Progress) -> Iterator[tuple[torch.Tensor, int]]:
        others = cycled(feed, "retain", feed.batch_size) if self.uses_retain and self.anchor != "retain" else None
        for batch in token_batches(feed, self.anchor, feed.batch_size):
            retain = next(others) if others is not None else None
            yield self.loss(batch, retain), len(batch["input_ids"])

    def loss(self, batch: dict[str, torch.Tensor], retain: dict[str, torch.Tensor] | None) -> torch.Tensor:
        raise NotImplementedError
