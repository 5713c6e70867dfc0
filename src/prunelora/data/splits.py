"""Class-wise forgetting splits and class-balanced subsets, as tensors that live on the device
(or, streamed, as positions in their source read per batch: data/stream.py).

Samples a request names (data/ids.py) are always in the training subset and never in the holdout:
the original must have trained on every sample it is asked to forget.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError, shown
from .raw import RawDataset
from .stream import Images, ImageSource, StreamedImages, array_source, concat, take


@dataclass
class ImageSet:
    """A labelled set of images (N, C, H, W) and int64 labels, both on one device.

    uint8 images are pixels (the fast, compact default: scaled to [0, 1] per batch); float images
    are already on the model's own input scale and are used as they are. `images` is a tensor, or
    StreamedImages for data that does not fit in memory (read batch by batch; subsets and joins
    never read).
    """

    images: Images
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    @property
    def streamed(self) -> bool:
        return isinstance(self.images, StreamedImages)

    def subset(self, index: torch.Tensor | np.ndarray) -> ImageSet:
        """The samples at `index`: positions, or a boolean mask over the set."""
        index = torch.as_tensor(index, device=self.labels.device)
        index = index if index.dtype == torch.bool else index.long()
        return ImageSet(take(self.images, index), self.labels[index])

    @staticmethod
    def join(parts: list[ImageSet], labels: torch.Tensor | None = None) -> ImageSet:
        """The sets one after the other (labels: replacements for the joined labels)."""
        joined = torch.cat([p.labels for p in parts]) if labels is None else labels
        return ImageSet(concat([p.images for p in parts]), joined)


@dataclass
class Splits:
    """The four sets of class-wise unlearning, plus what is needed to rebuild a model for them."""

    forget_train: ImageSet  # everything forgotten so far (all requests up to this one)
    retain_train: ImageSet
    test_retain: ImageSet  # the test samples of the remaining classes (all of them for random forgetting)
    test_forget: ImageSet  # the test samples of the forgotten classes (empty for random forgetting)
    num_classes: int
    forget_class: int | None  # the class of a class-wise request (the latest one in a sequence); None: random
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    train: ImageSet  # every training image in dataset order, forget class included: the original's data,
    # identical whatever the forget class, so one cached original serves every forget class
    forget_classes: list[int] = field(default_factory=list)  # every class forgotten so far ([] for random)
    forget_index: np.ndarray | None = None  # positions of forget_train in train
    request_sets: list[ImageSet] = field(default_factory=list)  # the data of each request so far, in order
    scenario: str = "class"
    request: int = 1  # 1-based position in a sequence of requests
    forget_ids: list[str] = field(default_factory=list)  # the ids (RawDataset.train_ids) of forget_train, in order
    request_ids: list[list[str]] = field(default_factory=list)  # the ids of each request's data, in order
    # None: the training subset is the seeded draw; else a digest of it (named samples forced into it changed
    # what the original trains on, so its cache key changes too)
    subset_key: str | None = None

    @property
    def new_forget(self) -> ImageSet:
        """The data this request asks to forget: what a forget-aware objective sees."""
        return self.request_sets[-1] if self.request_sets else self.forget_train

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.retain_train.images.shape[1:])  # type: ignore[return-value]

    def named(self) -> dict[str, ImageSet]:
        return {"forget_train": self.forget_train, "retain_train": self.retain_train,
                "test_retain": self.test_retain, "test_forget": self.test_forget}


def balanced_indices(labels: np.ndarray, per_class: int | None, seed: int, first: np.ndarray | None = None,
                     never: np.ndarray | None = None) -> np.ndarray:
    """Up to per_class indices of each class, drawn with a seeded permutation, in ascending order.

    first: indices always taken, ahead of the draw (a class keeps all of them, even past per_class);
    never: indices never taken. The draw is otherwise unchanged: where the plain draw already held every
    index of `first` and none of `never`, the result is the plain draw.
    """
    if per_class is None:
        every = np.arange(len(labels))
        return every if never is None else np.setdiff1d(every, never)
    order = np.random.default_rng(seed).permutation(len(labels))
    ahead = np.zeros(len(labels), dtype=bool)
    if first is not None or never is not None:
        barred = np.zeros(len(labels), dtype=bool)
        ahead[np.asarray(first if first is not None else [], dtype=np.int64)] = True
        barred[np.asarray(never if never is not None else [], dtype=np.int64)] = True
        order = np.concatenate([order[ahead[order]], order[~ahead[order] & ~barred[order]]])
    keep = []
    for cls in np.unique(labels):
        members = order[labels[order] == cls]
        keep.append(members[:max(per_class, int(ahead[members].sum()))])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)  # no labels: a dataset without a test split


def class_index(raw: RawDataset, forget_class: int | str) -> int:
    """A class given by index or by name ("cat"), as its index; anything else is a UserError."""
    if isinstance(forget_class, str):
        if forget_class in raw.class_names:
            return raw.class_names.index(forget_class)
        listed = ", ".join(map(shown, raw.class_names[:20])) + (", ..." if raw.num_classes > 20 else "")
        raise UserError(f"class '{shown(forget_class)}' is not in {shown(raw.name)} (its classes: {listed})")
    if not 0 <= forget_class < raw.num_classes:
        raise UserError(f"forget class {forget_class} is out of range: {shown(raw.name)} has classes 0 to "
                        f"{raw.num_classes - 1}")
    return int(forget_class)


def describe_class(class_names: list[str], cls: int) -> str:
    """'class 3', with its name when it has one ('class 3 (fox)')."""
    name = class_names[cls] if class_names else str(cls)
    return f"class {cls}" + (f" ({name})" if name != str(cls) else "")


def check_classes(raw: RawDataset, forget: list[int]) -> None:
    """Every class must have training images: one to forget (else there is nothing to forget, and UA reads NaN
    while every verdict looks fine), and one to keep (else the model never learns it). Checked on the raw
    training set, before anything is written."""
    counts = np.bincount(raw.train_labels, minlength=raw.num_classes)
    empty = [c for c in forget if counts[c] == 0] or [c for c in range(raw.num_classes) if counts[c] == 0]
    if empty:
        why = "there is nothing to forget (add its images, or forget another class)" if empty[0] in forget else \
            "the model never learns it, so it cannot be kept (add its images, or leave the class out of the data)"
        raise UserError(f"{shown(describe_class(raw.class_names, empty[0]))} has no training images in "
                        f"{shown(raw.name)}: {why}")


def gather(images: np.ndarray | ImageSource, index: np.ndarray, device: torch.device | str,
           stream: bool = False) -> Images:
    """The images at `index`: on the device, or (streamed, and always for a source) their positions,
    read per batch."""
    if isinstance(images, ImageSource):
        return StreamedImages(images, index, device)
    if stream:
        return StreamedImages(array_source(images, describe="images"), index, device)
    return torch.from_numpy(np.ascontiguousarray(images[index])).to(device)


def train_positions(raw: RawDataset, train_per_class: int | None, seed: int, holdout_per_class: int | None = None,
                    named: np.ndarray | None = None) -> np.ndarray:
    """Where the class-balanced training subset of a seed lies in the raw training set (ascending).

    holdout_per_class: that many training images of each class, drawn with the seed, never trained on
    (the field's validation split: CIFAR-10's 45 000 / 5 000 is 500 per class).
    named: positions the subset must hold, never held out (balanced_indices' `first` and `never`).
    """
    named = None if named is None or not len(named) else np.unique(named)
    pool = np.arange(len(raw.train_labels))
    if holdout_per_class:
        pool = np.setdiff1d(pool, balanced_indices(raw.train_labels, holdout_per_class, seed + 2, never=named))
    first = None if named is None else np.searchsorted(pool, named)
    return pool[balanced_indices(raw.train_labels[pool], train_per_class, seed, first=first)]


def subset_key(raw: RawDataset, train_per_class: int | None, seed: int, holdout_per_class: int | None,
               named: np.ndarray | None) -> str | None:
    """None where the named samples leave the training subset the seeded draw (every run without named samples
    trains on it); else a digest of the subset they forced, so that a cached original is keyed on its data."""
    if named is None or not len(named):
        return None
    forced = train_positions(raw, train_per_class, seed, holdout_per_class, named)
    if np.array_equal(forced, train_positions(raw, train_per_class, seed, holdout_per_class)):
        return None
    return hashlib.sha256(forced.astype(np.int64).tobytes()).hexdigest()[:12]


def subsets(raw: RawDataset, train_per_class: int | None, test_per_class: int | None, seed: int,
            device: torch.device | str, stream: bool = False, holdout_per_class: int | None = None,
            named: np.ndarray | None = None) -> tuple[ImageSet, ImageSet]:
    """The class-balanced training and test subsets of a seed, on the device, in dataset order.

    stream: keep the images where they are (host memory, files) and read them per batch.
    holdout_per_class, named: as train_positions takes them.
    """
    train_idx = train_positions(raw, train_per_class, seed, holdout_per_class, named)
    return gathered(raw, train_idx, balanced_indices(raw.test_labels, test_per_class, seed + 1), device, stream)


def gathered(raw: RawDataset, train_idx: np.ndarray, test_idx: np.ndarray, device: torch.device | str,
             stream: bool = False) -> tuple[ImageSet, ImageSet]:
    """The training and test samples at those positions, as ImageSets on the device (or streamed)."""
    train = ImageSet(gather(raw.train_images, train_idx, device, stream),
                     torch.from_numpy(raw.train_labels[train_idx]).to(device))
    test = ImageSet(gather(raw.test_images, test_idx, device, stream),
                    torch.from_numpy(raw.test_labels[test_idx]).to(device))
    return train, test


def forget_splits(raw: RawDataset, train: ImageSet, test: ImageSet, forget: np.ndarray, test_forget: np.ndarray,
                  positions: np.ndarray | None = None, **request) -> Splits:
    """Splits from boolean masks over the training set (forgotten) and the test set (of forgotten classes).
    positions: where the training set lies in the raw one (its ids give forget_ids). A request that forgets every
    training sample is a UserError: an empty retain set leaves nothing to train, tune or measure on."""
    if len(forget) and np.all(forget):
        raise UserError(f"the request forgets all {len(forget)} training samples of {shown(raw.name)}: nothing would "
                        "be left to keep; forget fewer classes or samples")
    ids = [raw.train_ids[i] for i in positions[forget]] if positions is not None else []
    return Splits(
        forget_train=train.subset(forget), retain_train=train.subset(~forget),
        test_retain=test.subset(~test_forget), test_forget=test.subset(test_forget),
        num_classes=raw.num_classes, mean=raw.mean, std=raw.std, class_names=raw.class_names, train=train,
        forget_index=np.flatnonzero(forget), forget_ids=ids, **request)


def class_splits(raw: RawDataset, forget_class: int | str | list[int | str], train_per_class: int | None = None,
                 test_per_class: int | None = None, seed: int = 0,
                 device: torch.device | str = "cpu", stream: bool = False) -> Splits:
    """Forget class k (an index or a class name; or several) gives forget-train, retain-train, test-retain
    and test-forget. stream: images stay where they are and are read per batch (data/stream.py)."""
    classes = [class_index(raw, c) for c in (forget_class if isinstance(forget_class, list) else [forget_class])]
    check_classes(raw, classes)
    positions = train_positions(raw, train_per_class, seed)
    train, test = gathered(raw, positions, balanced_indices(raw.test_labels, test_per_class, seed + 1), device, stream)
    return forget_splits(raw, train, test, np.isin(train.labels.cpu().numpy(), classes),
                         np.isin(test.labels.cpu().numpy(), classes), positions, forget_class=classes[-1],
                         forget_classes=classes)
