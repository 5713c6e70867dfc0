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


def _draw_device(generator: torch.Generator | None, images: torch.Tensor) -> torch.device:
    """Where a random draw happens: on the generator's own device (a seeded CPU generator gives the same images on
    a GPU; the few numbers per batch then move), else beside the images."""
    return generator.device if generator is not None else images.device


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of every image after zero padding, as one gather over the whole batch."""
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    where = _draw_device(generator, images)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=where, generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=where, generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (n, 1, 1, w)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]  # (n, c, h, w), standard strides


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Horizontal flip of a random half of the batch."""
    draws = torch.rand(images.shape[0], device=_draw_device(generator, images), generator=generator)
    flip = draws.to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def crop_padding(side: int) -> int:
    """The random crop's zero padding: 1/8 of the side (4 pixels at 32x32, the field's RandomCrop(32, padding=4))."""
    return side // 8


def crop_rule(side: int | None = None) -> str:
    """The crop in words, for a run's recorded settings (in pixels when the image side is known)."""
    if side is None:
        return "random crop after zero padding of side // 8 (4 px at 32x32, 2 at 16x16)"
    return f"random crop after zero padding of {crop_padding(side)} px (side // 8 at {side}x{side})"


def augment(images: torch.Tensor, generator: torch.Generator | None = None, flip: bool = True) -> torch.Tensor:
    """Crop with padding of 1/8 of the side, then (with flip) a horizontal flip of a random half, on uint8 images.

    flip=False for images whose mirror shows another class or none (digits)."""
    cropped = random_crop(images, crop_padding(images.shape[-1]), generator)
    return random_flip(cropped, generator) if flip else cropped


def shuffled_batches(data: ImageSet, batch_size: int, generator: torch.Generator, augmentation: bool,
                     features: torch.Tensor | None = None, flip: bool = True
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of (positions, inputs, labels); the last partial batch is kept.

    Inputs are float images (augmented on the device when asked, flipped only with flip), or rows of
    `features` (a cached prefix's output for every sample of `data`, in its order) when given.
    """
    order = torch.randperm(len(data), device="cpu", generator=generator).to(data.labels.device)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if features is not None:
            yield idx, features[idx], data.labels[idx]
            continue
        images = data.images[idx]
        if augmentation:
            images = augment(images, generator, flip)
        yield idx, to_float(images), data.labels[idx]


def train_batches(data: ImageSet, batch_size: int, generator: torch.Generator,
                  augmentation: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of (float images, labels)."""
    for _, images, labels in shuffled_batches(data, batch_size, generator, augmentation):
        yield images, labels


def eval_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        yield to_float(data.images[start:start + batch_size]), data.labels[start:start + batch_size]
