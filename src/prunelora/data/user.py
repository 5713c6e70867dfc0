"""The user's data in the forms users hold it, turned into an ImageSet.

Accepted: an ImageSet; an (images, labels) pair of tensors or numpy arrays, uint8 pixels or floats
on the model's own scale, channels first or last; any torch Dataset of (image, label); a
DataLoader. Everything is gathered into memory once, so that the hot path stays on-device
tensors (the fast default).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .splits import ImageSet


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{what} must be a tensor or an array, got {type(value).__name__}") from None


def channels_first(images: torch.Tensor, name: str) -> torch.Tensor:
    """(N, H, W, C) with 1 or 3 channels last becomes (N, C, H, W); (N, H, W) gains a channel."""
    if images.dim() == 3:
        return images.unsqueeze(1)
    if images.dim() != 4:
        raise UserError(f"{name}: images must have shape (N, C, H, W) or (N, H, W, C), got {tuple(images.shape)}")
    if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
        return images.permute(0, 3, 1, 2).contiguous()
    return images


def from_arrays(images: Any, labels: Any, name: str) -> ImageSet:
    images = channels_first(_tensor(images, f"{name} images"), name)
    labels = _tensor(labels, f"{name} labels")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UserError(f"{name}: images must be uint8 pixels or floats, got {images.dtype}")
    if labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(images):
        raise UserError(f"{name}: labels must be {len(images)} integer class indices, got {labels.dtype} "
                        f"{tuple(labels.shape)}")
    return ImageSet(images if images.dtype == torch.uint8 else images.float(), labels.long().to(images.device))


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, label) items whose images may be tensors, arrays or PIL images."""
    if not all(isinstance(item, (tuple, list)) and len(item) >= 2 for item in items):
        raise UserError("every item of the dataset must be an (image, label) pair")
    images = torch.stack([_tensor(item[0], "dataset images") for item in items])
    labels = torch.as_tensor([int(item[1]) for item in items])
    return images, labels


def from_batches(batches, name: str) -> ImageSet:
    """Gather a DataLoader's (or a Dataset's) (image, label) batches into one ImageSet."""
    images, labels = [], []
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise UserError(f"{name}: every item must be an (image, label) pair, got {type(batch).__name__}")
        images.append(_tensor(batch[0], f"{name} images"))
        labels.append(_tensor(batch[1], f"{name} labels").reshape(-1))
    if not images:
        raise UserError(f"{name} is empty")
    return from_arrays(torch.cat(images), torch.cat(labels), name)


def as_imageset(data: Any, name: str) -> ImageSet:
    """An ImageSet from any accepted form (see the module docstring); anything else is a UserError."""
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, DataLoader):
        return from_batches(data, name)
    if isinstance(data, Dataset):
        return from_batches(DataLoader(data, batch_size=256, collate_fn=_collate), name)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return from_arrays(data[0], data[1], name)
    raise UserError(f"{name} must be an ImageSet, an (images, labels) pair, a torch Dataset of (image, label) "
                    f"or a DataLoader, got {type(data).__name__}")
