"""The class scenario: forget one whole class (the paper's default request)."""
from __future__ import annotations

from ..sources import RawDataset
from ..splits import class_index
from .base import Request, RequestFields, Scenario


class OneClass(Scenario):
    """Forget --forget-class: its training images, measured on its test images."""

    name = "class"
    help = "one class (default)"

    def class_wise(self, data: RequestFields) -> bool:
        return True

    def draw(self, raw: RawDataset, data: RequestFields) -> list[Request]:
        return [Request(1, class_index(raw, data.forget_class), None)]
