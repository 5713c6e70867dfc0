"""Images as tensors, checked where they enter: the shapes every loader accepts, one line per mistake.

The lowest layer of data/: the user's arrays (data/user.py), streamed datasets (data/stream.py) and
files (data/files.py) all shape their images here, so none of them needs another.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserError


def to_tensor(value: Any, what: str) -> torch.Tensor:
    """A tensor from a tensor, an array, or a list of them (stacked: they must be of one shape)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and \
            all(isinstance(v, torch.Tensor) or hasattr(v, "__array_interface__") for v in value):
        return stacked([to_tensor(v, what) for v in value], what)
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{what} must be a tensor or an array, got {type(value).__name__}") from None


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether an (N, H, W, C) batch holds 1, 3 or 4 channels last (rather than (N, C, H, W))."""
    return len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4)


def channels_first(images: torch.Tensor, name: str) -> torch.Tensor:
    """(N, H, W, C) with 1, 3 or 4 channels last becomes (N, C, H, W); (N, H, W) gains a channel."""
    if images.dim() == 3:
        return images.unsqueeze(1)
    if images.dim() != 4:
        raise UserError(f"{name}: images must have shape (N, C, H, W) or (N, H, W, C), got {tuple(images.shape)}")
    if channels_last(tuple(images.shape)):
        return images.permute(0, 3, 1, 2).contiguous()
    return images


def stacked(images: list[torch.Tensor], what: str, batches: bool = False) -> torch.Tensor:
    """Images (or, batches=True, batches of them) as one tensor: images of different shapes are the user's to
    fix, said in one line rather than by torch.stack."""
    shapes = sorted({tuple(i.shape[1:] if batches else i.shape) for i in images})
    if len(shapes) > 1:
        shown = ", ".join(map(str, shapes[:3])) + (", ..." if len(shapes) > 3 else "")
        raise UserError(f"{what} differ in shape ({shown}): give images of one size (resize them)")
    return torch.cat(images) if batches else torch.stack(images)


def item_image(item: Any, name: str) -> torch.Tensor:
    """The image of one (image, label) item, as a tensor (from a tensor, an array or a PIL image)."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise UserError(f"{name}: every item must be an (image, label) pair, got {type(item).__name__}")
    return to_tensor(item[0], f"{name} images")
