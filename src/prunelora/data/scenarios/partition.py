"""Splits after a history of requests: which training images each request forgets.

Class requests forget their classes' images (train and test). Random requests are drawn with the
seed, uniformly over all classes, as disjoint chunks of one permutation: request k forgets chunk k,
so a sequence of k random requests has forgotten k shares. Named requests forget the samples their
request files name (request k: file k's); the training subset holds every sample any request of the
run names, so that the original trained on all of them.
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import UserError
from ..sources import RawDataset
from ..splits import Splits, balanced_indices, forget_splits, gathered, subset_key, train_positions
from .base import Request
from .named import named_positions


def random_order(size: int, seed: int) -> np.ndarray:
    """The seeded permutation whose consecutive chunks are the random requests."""
    return np.random.default_rng([seed, 0x5EED]).permutation(size)


def request_splits(raw: RawDataset, history: list[Request], train_per_class: int | None,
                   test_per_class: int | None, seed: int, device: torch.device | str, scenario: str,
                   stream: bool = False, holdout_per_class: int | None = None,
                   every: list[Request] | None = None) -> Splits:
    """Splits after every request in `history` (the last one is the current request).

    every: all the run's requests (default: history), whose named samples the training subset holds: one
    subset, and one original, for the whole sequence.
    """
    named = named_positions(every if every is not None else history)
    positions = train_positions(raw, train_per_class, seed, holdout_per_class, named)
    train, test = gathered(raw, positions, balanced_indices(raw.test_labels, test_per_class, seed + 1), device,
                           stream)
    labels = train.labels.cpu().numpy()
    no_test = np.zeros(len(test), dtype=bool)
    if history[-1].cls is not None:
        classes = [r.cls for r in history]
        parts = [labels == c for c in classes]
        splits = forget_splits(raw, train, test, np.isin(labels, classes),
                               np.isin(test.labels.cpu().numpy(), classes), positions,
                               forget_class=classes[-1], forget_classes=classes)
    elif history[-1].named is not None:
        parts = [np.isin(positions, r.named.positions) for r in history]
        splits = forget_splits(raw, train, test, np.logical_or.reduce(parts), no_test, positions, forget_class=None)
    else:
        parts = random_parts(history, len(train), seed)
        splits = forget_splits(raw, train, test, np.logical_or.reduce(parts), no_test, positions, forget_class=None)
    splits.request_sets = [train.subset(np.flatnonzero(part)) for part in parts]
    splits.request_ids = [[raw.train_ids[i] for i in positions[part]] for part in parts]
    splits.subset_key = subset_key(raw, train_per_class, seed, holdout_per_class, named)
    splits.scenario, splits.request = scenario, history[-1].index
    return splits


def random_parts(history: list[Request], size: int, seed: int) -> list[np.ndarray]:
    """One boolean mask over the training set per random request: its chunk of the seeded order."""
    order = random_order(size, seed)
    share = max(1, round(history[-1].ratio * size))
    if len(history) * share >= size:
        raise UserError(f"{len(history)} random requests of {history[-1].ratio} leave no training data "
                        "(lower --forget-ratio or --requests)")
    parts = []
    for r in history:
        part = np.zeros(size, dtype=bool)
        part[order[(r.index - 1) * share:r.index * share]] = True
        parts.append(part)
    return parts
