"""Class-wise forgetting splits and class-balanced subsets, as tensors that live on the device."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .sources import RawDataset


@dataclass
class ImageSet:
    """A labelled set of images (N, C, H, W) and int64 labels, both on one device.

    uint8 images are pixels (the fast, compact default: scaled to [0, 1] per batch); float images
    are already on the model's own input scale and are used as they are.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "ImageSet":
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor | np.ndarray) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long, device=self.labels.device)
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class Splits:
    """The four sets of class-wise unlearning, plus what is needed to rebuild a model for them."""

    forget_train: ImageSet
    retain_train: ImageSet
    test_retain: ImageSet
    test_forget: ImageSet
    num_classes: int
    forget_class: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    train: ImageSet  # every training image in dataset order, forget class included: the original's data,
    # identical whatever the forget class, so one cached original serves every forget class

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.retain_train.images.shape[1:])  # type: ignore[return-value]

    def named(self) -> dict[str, ImageSet]:
        return {"forget_train": self.forget_train, "retain_train": self.retain_train,
                "test_retain": self.test_retain, "test_forget": self.test_forget}


def balanced_indices(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Up to per_class indices of each class, drawn with a seeded permutation, in ascending order."""
    if per_class is None:
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    keep = []
    for cls in np.unique(labels):
        keep.append(order[labels[order] == cls][:per_class])
    return np.sort(np.concatenate(keep))


def class_index(raw: RawDataset, forget_class: int | str) -> int:
    """A class given by index or by name ("cat"), as its index; anything else is a UserError."""
    if isinstance(forget_class, str):
        if forget_class in raw.class_names:
            return raw.class_names.index(forget_class)
        shown = ", ".join(raw.class_names[:20]) + (", ..." if raw.num_classes > 20 else "")
        raise UserError(f"class '{forget_class}' is not in {raw.name} (its classes: {shown})")
    if not 0 <= forget_class < raw.num_classes:
        raise UserError(f"forget class {forget_class} is out of range: {raw.name} has classes 0 to "
                        f"{raw.num_classes - 1}")
    return int(forget_class)


def class_splits(raw: RawDataset, forget_class: int | str, train_per_class: int | None = None,
                 test_per_class: int | None = None, seed: int = 0,
                 device: torch.device | str = "cpu") -> Splits:
    """Forget class k (an index or a class name) gives forget-train, retain-train, test-retain and test-forget."""
    forget_class = class_index(raw, forget_class)
    train_idx = balanced_indices(raw.train_labels, train_per_class, seed)
    test_idx = balanced_indices(raw.test_labels, test_per_class, seed + 1)
    train_x = torch.from_numpy(np.ascontiguousarray(raw.train_images[train_idx])).to(device)
    train_y = torch.from_numpy(raw.train_labels[train_idx]).to(device)
    test_x = torch.from_numpy(np.ascontiguousarray(raw.test_images[test_idx])).to(device)
    test_y = torch.from_numpy(raw.test_labels[test_idx]).to(device)
    forget_tr, forget_te = train_y == forget_class, test_y == forget_class
    return Splits(
        forget_train=ImageSet(train_x[forget_tr], train_y[forget_tr]),
        retain_train=ImageSet(train_x[~forget_tr], train_y[~forget_tr]),
        test_retain=ImageSet(test_x[~forget_te], test_y[~forget_te]),
        test_forget=ImageSet(test_x[forget_te], test_y[forget_te]),
        num_classes=raw.num_classes,
        forget_class=forget_class,
        mean=raw.mean,
        std=raw.std,
        class_names=raw.class_names,
        train=ImageSet(train_x, train_y),
    )
