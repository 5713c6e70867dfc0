"""The user's data in the forms users hold it, turned into an ImageSet.

Accepted: an ImageSet; an (images, labels) pair of tensors or numpy arrays, uint8 pixels or floats
on the model's own scale, channels first or last; any torch Dataset of (image, label); a
DataLoader. By default everything is gathered into memory once, so that the hot path stays
on-device tensors (the fast default). With stream=True (and always for a np.memmap), images stay
where they are and are read batch by batch (data/stream.py): data that does not fit in memory.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler, Subset

from ..errors import UserError
from .images import channels_first, channels_last, item_image, stacked, to_tensor
from .raw import class_labels
from .splits import ImageSet
from .stream import StreamedImages, array_source, check_finite, dataset_source


def _pixels_or_floats(is_pixels: bool, is_float: bool, dtype: Any, name: str) -> None:
    if not (is_pixels or is_float):
        raise UserError(f"{name}: images must be uint8 pixels or floats, got {dtype}")


def _labels(labels: Any, count: int, name: str) -> torch.Tensor:
    """Integer class indices, one per image, none negative (raw.class_labels), on the labels' device."""
    labels = to_tensor(labels, f"{name} labels")
    return torch.from_numpy(class_labels(labels.detach().cpu(), name, count=count)).to(labels.device)


def _no_images(name: str) -> UserError:
    return UserError(f"{name} holds no images: give at least one")


def checked(data: ImageSet, name: str) -> ImageSet:
    """`data`, refused where it enters when it would train silently wrong: no images, labels that are not class
    indices, float pixels that are NaN or infinite (a streamed set's are checked as each batch is read)."""
    if len(data.images) == 0:
        raise _no_images(name)
    labels = _labels(data.labels, len(data.images), name)
    if isinstance(data.images, torch.Tensor):
        check_finite(data.images, name)
    return ImageSet(data.images, labels)


def check_alike(sets: dict[str, ImageSet | None]) -> None:
    """The sets one model sees hold images of one shape and kind (uint8 pixels or floats): they are joined and
    fed to the same network, where other shapes fail and mixed scales would be read silently wrong."""
    def kind(data: ImageSet) -> str:
        pixels = "floats" if data.images.is_floating_point() else "uint8 pixels"
        return f"{pixels} of shape {tuple(data.images.shape[1:])}"

    (first, reference), *others = [(name, data) for name, data in sets.items() if data is not None]
    for name, data in others:
        if kind(data) != kind(reference):
            raise UserError(f"{name} holds {kind(data)} but {first} {kind(reference)}: give every set images of one "
                            "shape and kind")


def from_arrays(images: Any, labels: Any, name: str) -> ImageSet:
    images = channels_first(to_tensor(images, f"{name} images"), name)
    _pixels_or_floats(images.dtype == torch.uint8, images.is_floating_point(), images.dtype, name)
    return ImageSet(images if images.dtype == torch.uint8 else images.float(),
                    _labels(labels, len(images), name).to(images.device))


def _collate(items: list, name: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, label) items whose images may be tensors, arrays or PIL images (labels are checked later,
    never cast: a float label is refused, not truncated)."""
    images = stacked([item_image(item, name) for item in items], f"{name} images")
    return images, to_tensor([item[1] for item in items], f"{name} labels")


def from_batches(batches, name: str) -> ImageSet:
    """Gather a DataLoader's (or a Dataset's) (image, label) batches into one ImageSet."""
    images, labels = [], []
    try:
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise UserError(f"{name}: every item must be an (image, label) pair, got {type(batch).__name__}")
            images.append(to_tensor(batch[0], f"{name} images"))
            labels.append(to_tensor(batch[1], f"{name} labels").reshape(-1))
    except RuntimeError as exc:  # the user's own loader: torch's default collate stacking images of two shapes
        raise UserError(f"{name}: reading a batch failed ({str(exc).splitlines()[0]}); a batch stacks images of "
                        "one size") from None
    if not images:
        raise _no_images(name)
    return from_arrays(stacked(images, f"{name} images", batches=True), torch.cat(labels), name)


def dataset_labels(dataset: Any, name: str) -> torch.Tensor:
    """Every label of a map-style Dataset: its `targets`/`labels` attribute (a Subset's from its dataset's),
    else one pass over its items."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset, name)[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    for attribute in ("targets", "labels"):
        known = getattr(dataset, attribute, None)
        if known is not None and not callable(known) and len(known) == len(dataset):
            return to_tensor(known, f"{name} labels").reshape(-1)
    labels = []
    for i in range(len(dataset)):
        item = dataset[i]
        item_image(item, name)  # the same one-line error as reading it would give
        labels.append(item[1])
    return to_tensor(labels, f"{name} labels")


def streamed(data: Any, name: str = "data", device: torch.device | str | None = None) -> ImageSet:
    """An ImageSet whose images stay where they are and are read batch by batch onto `device`.

    data: a map-style Dataset of (image, label), a DataLoader over one, an (images, labels) pair
    (a np.memmap reads only the rows of each batch), or an ImageSet (its images move to host
    memory and travel to the device per batch). Checked as `checked` says.
    """
    return checked(_streamed(data, name, device), name)


def _streamed(data: Any, name: str, device: torch.device | str | None) -> ImageSet:
    if isinstance(data, ImageSet):
        if isinstance(data.images, StreamedImages):
            return data if device is None else data.to(device)
        where = device if device is not None else data.labels.device
        return ImageSet(StreamedImages(array_source(data.images.cpu(), describe=name), device=where),
                        data.labels.to(where))
    where = torch.device(device if device is not None else "cpu")
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, (SequentialSampler, RandomSampler)) or \
                getattr(data.sampler, "num_samples", len(data.dataset)) != len(data.dataset):
            raise UserError(f"{name}: a streamed DataLoader is read through its dataset, but its sampler picks "
                            f"{type(data.sampler).__name__} samples of it; pass the dataset (a torch Subset for "
                            "part of it) instead")
        data = data.dataset
    if isinstance(data, Dataset):
        return ImageSet(StreamedImages(dataset_source(data, name), device=where), dataset_labels(data, name).to(where))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        images = images if isinstance(images, np.ndarray) else np.asarray(images)
        images = images[:, None] if images.ndim == 3 else images
        if images.ndim != 4:
            raise UserError(f"{name}: images must have shape (N, C, H, W) or (N, H, W, C), got {tuple(images.shape)}")
        _pixels_or_floats(images.dtype == np.uint8, np.issubdtype(images.dtype, np.floating), images.dtype, name)
        source = array_source(images, channels_last=channels_last(images.shape), describe=name)
        return ImageSet(StreamedImages(source, device=where), _labels(labels, len(images), name).to(where))
    raise UserError(f"{name} cannot be streamed: give a map-style Dataset, a DataLoader, an (images, labels) "
                    f"pair or an ImageSet, got {type(data).__name__}")


def as_imageset(data: Any, name: str, stream: bool = False, device: torch.device | str | None = None) -> ImageSet:
    """An ImageSet from any accepted form (see the module docstring); anything else is a UserError.

    stream (and always for a np.memmap): images are read per batch onto `device` (see `streamed`).
    """
    if stream or (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], np.memmap)):
        return streamed(data, name, device)
    if isinstance(data, ImageSet):
        return checked(data, name)
    if isinstance(data, DataLoader):
        return checked(from_batches(data, name), name)
    if isinstance(data, Dataset):
        return checked(from_batches(DataLoader(data, batch_size=256, collate_fn=partial(_collate, name=name)), name),
                       name)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return checked(from_arrays(data[0], data[1], name), name)
    raise UserError(f"{name} must be an ImageSet, an (images, labels) pair, a torch Dataset of (image, label) "
                    f"or a DataLoader, got {type(data).__name__}")
