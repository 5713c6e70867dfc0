"""The random scenario: forget a seeded random share of the training set, drawn over all classes."""
from __future__ import annotations

from ..sources import RawDataset
from .base import DEFAULT_RATIO, Request, RequestFields, Scenario


class RandomShare(Scenario):
    """Forget --forget-ratio of the training images (default 0.1); every test image measures TA."""

    name = "random"
    help = "a random share of the training set (--forget-ratio)"

    def draw(self, raw: RawDataset, data: RequestFields) -> list[Request]:
        return [Request(1, None, data.forget_ratio or DEFAULT_RATIO)]
