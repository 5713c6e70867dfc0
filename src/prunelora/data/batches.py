"""On-device mini-batches and batched augmentation: no per-image Python on the hot path."""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .splits import ImageSet

# Evaluation batch: on a CPU, 256 images ran a width-8 ResNet's forward over 5000 CIFAR-10 images in
# 0.55 s against 1.6 s at 1024 (a batch's activations then fit the caches); a GPU preset sets more.
EVAL_BATCH = 256


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1] (the model normalises them itself); float images pass as they are."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of every image after zero padding, as one gather over the whole batch."""
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (n, 1, 1, w)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]  # (n, c, h, w), standard strides


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Horizontal flip of a random half of the batch."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop with padding of 1/8 of the side (4 pixels at 32x32) and flip, on uint8 images."""
    return random_flip(random_crop(images, images.shape[-1] // 8, generator), generator)


def shuffled_batches(data: ImageSet, batch_size: int, generator: torch.Generator, augmentation: bool,
                     features: torch.Tensor | None = None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of (positions, inputs, labels); the last partial batch is kept.

    Inputs are float images (augmented on the device when asked), or rows of `features` (a cached
    prefix's output for every sample of `data`, in its order) when given.
    """
    order = torch.randperm(len(data), device="cpu", generator=generator).to(data.labels.device)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if features is not None:
            yield idx, features[idx], data.labels[idx]
            continue
        images = data.images[idx]
        if augmentation:
            images = augment(images, generator if images.device.type == "cpu" else None)
        yield idx, to_float(images), data.labels[idx]


def train_batches(data: ImageSet, batch_size: int, generator: torch.Generator,
                  augmentation: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of (float images, labels)."""
    for _, images, labels in shuffled_batches(data, batch_size, generator, augmentation):
        yield images, labels


def eval_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        yield to_float(data.images[start:start + batch_size]), data.labels[start:start + batch_size]
