"""Forget requests: one class, a random share of the training set, or a sequence of either.

Each request gives the Splits to evaluate on (everything forgotten so far) and the data it adds
(what a forget-aware objective sees). Random shares are drawn with the seed, uniformly over all
classes, as disjoint chunks of one permutation: request k forgets chunk k, so a sequence of k
random requests has forgotten k shares.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .sources import RawDataset
from .splits import Splits, check_classes, class_index, describe_class, forget_splits, subsets

DEFAULT_RATIO = 0.1


@dataclass(frozen=True)
class Request:
    """One request of a scenario: class-wise (its class) or random (its chunk of forget_ratio)."""

    index: int  # 1-based
    cls: int | None  # the class this request forgets; None: a random chunk
    ratio: float | None  # the share of the training set per random chunk

    def describe(self, class_names: list[str]) -> str:
        if self.cls is not None:
            return describe_class(class_names, self.cls)
        return f"random {100 * self.ratio:g} % (chunk {self.index})"


def requests_of(raw: RawDataset, scenario: str, forget_class: int | str, forget_ratio: float | None,
                requests: list[int | str] | None) -> list[Request]:
    """The scenario's requests in order; class names become indices; bad requests, and classes without training
    images (splits.check_classes), are a UserError: called right after the data is loaded, before any file is
    written."""
    found = _requests(raw, scenario, forget_class, forget_ratio, requests)
    check_classes(raw, [r.cls for r in found if r.cls is not None])
    return found


def _requests(raw: RawDataset, scenario: str, forget_class: int | str, forget_ratio: float | None,
              requests: list[int | str] | None) -> list[Request]:
    if scenario == "class":
        return [Request(1, class_index(raw, forget_class), None)]
    if scenario == "random":
        return [Request(1, None, forget_ratio or DEFAULT_RATIO)]
    if forget_ratio is not None:
        return [Request(k, None, forget_ratio) for k in range(1, int(requests[0]) + 1)]
    classes = [class_index(raw, c) for c in requests]
    if len(set(classes)) != len(classes):
        raise UserError(f"--requests names a class twice: {','.join(map(str, requests))} (each class is forgotten once)")
    if len(classes) >= raw.num_classes:
        raise UserError(f"--requests would forget every class of {raw.name}: leave at least one")
    return [Request(k, c, None) for k, c in enumerate(classes, start=1)]


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
        order = random_order(len(train), seed)
        share = max(1, round(history[-1].ratio * len(train)))
        if len(history) * share >= len(train):
            raise UserError(f"{len(history)} random requests of {history[-1].ratio} leave no training data "
                            "(lower --forget-ratio or --requests)")
        parts = []
        for r in history:
            part = np.zeros(len(train), dtype=bool)
            part[order[(r.index - 1) * share:r.index * share]] = True
            parts.append(part)
        splits = forget_splits(raw, train, test, np.logical_or.reduce(parts), np.zeros(len(test), dtype=bool),
                               forget_class=None)
    splits.request_sets = [train.subset(np.flatnonzero(part)) for part in parts]
    splits.scenario, splits.request = scenario, history[-1].index
    return splits
