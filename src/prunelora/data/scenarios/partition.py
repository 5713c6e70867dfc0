"""Splits after a history of requests: which training images each request forgets.

Class requests forget their classes' images (train and test). Random requests are drawn with the
seed, uniformly over all classes, as disjoint chunks of one permutation: request k forgets chunk k,
so a sequence of k random requests has forgotten k shares.
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import UserError
from ..sources import RawDataset
from ..splits import Splits, forget_splits, subsets
from .base import Request


def random_order(size: int, seed: int) -> np.ndarray:
    """The seeded permutation whose consecutive chunks are the random requests."""
    return np.random.default_rng([seed, 0x5EED]).permutation(size)


def request_splits(raw: RawDataset, history: list[Request], train_per_class: int | None,
                   test_per_class: int | None, seed: int, device: torch.device | str, scenario: str,
                   stream: bool = False, holdout_per_class: int | None = None) -> Splits:
    """Splits after every request in `history` (the last one is the current request)."""
    train, test = subsets(raw, train_per_class, test_per_class, seed, device, stream, holdout_per_class)
    labels = train.labels.cpu().numpy()
    if history[-1].cls is not None:
        classes = [r.cls for r in history]
        parts = [labels == c for c in classes]
        splits = forget_splits(raw, train, test, np.isin(labels, classes),
                               np.isin(test.labels.cpu().numpy(), classes),
                               forget_class=classes[-1], forget_classes=classes)
    else:
        parts = random_parts(history, len(train), seed)
        splits = forget_splits(raw, train, test, np.logical_or.reduce(parts), np.zeros(len(test), dtype=bool),
                               forget_class=None)
    splits.request_sets = [train.subset(np.flatnonzero(part)) for part in parts]
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
