"""A dataset as every loader hands it over, and the label check every loader applies.

Built-in datasets (data/sources.py) and the user's files (data/files.py) both produce a RawDataset;
it lives below them so that neither needs the other.

Every training sample has an id, the string a request file names it by (data/ids.py): its row index
by default; an image folder's file path; a datasets folder's --id-column value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UserError
from .stream import ImageSource


@dataclass
class RawDataset:
    """Images as uint8 (N, C, H, W) numpy arrays (or, streamed, ImageSources read per batch), labels as
    int64, and the channel statistics."""

    name: str
    train_images: np.ndarray | ImageSource
    train_labels: np.ndarray
    test_images: np.ndarray | ImageSource
    test_labels: np.ndarray
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Whether a mirrored image shows the same class: training augmentation flips only then (digits: no).
    mirror_invariant: bool = True
    # One id per training image, in order ([]: the row index, "0", "1", ...), and what they are: "index",
    # "path" (an image folder's files, below its root) or "column" (the datasets folder's column id_column).
    train_ids: list[str] = field(default_factory=list)
    id_kind: str = "index"
    id_column: str | None = None

    def __post_init__(self) -> None:
        if not self.train_ids:
            self.train_ids = [str(i) for i in range(len(self.train_labels))]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


def class_labels(labels: Any, where: str, num_classes: int | None = None, count: int | None = None) -> np.ndarray:
    """Labels as int64 class indices in [0, num_classes), checked where they enter: integers only (a float label
    is refused, never truncated) and none outside the classes (a -1 or a stray 1000 fails late or grows the
    model). count: how many there must be (one per image)."""
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError, RuntimeError):  # ragged lists, tensors numpy cannot hold
        array = None
    if array is None or array.dtype.kind not in "iu" or array.ndim != 1 or count not in (None, len(array)):
        got = f"{array.dtype} {array.shape}" if array is not None else type(labels).__name__
        raise UserError(f"{where}: labels must be {'' if count is None else f'{count} '}integer class indices, "
                        f"got {got} (store them as integers: a float label is never rounded)")
    low, high = (int(array.min()), int(array.max())) if len(array) else (0, -1)
    if low < 0 or (num_classes is not None and high >= num_classes):
        upto = f" to {num_classes - 1}" if num_classes is not None else ""
        raise UserError(f"{where}: label {low if low < 0 else high} is out of range (class indices run from 0{upto}); "
                        "fix or drop those samples")
    return array.astype(np.int64)


def first_repeat(values: Any) -> Any:
    """The first value seen twice, or None: an id (of a sample, or in a request) must name one thing."""
    seen = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None
