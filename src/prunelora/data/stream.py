"""Images read from where they are kept, batch by batch: data that does not fit in memory.

The fast default holds every image on the device as uint8 (an ImageSet whose images are a
tensor). A streamed ImageSet holds its labels and, instead of the images, `StreamedImages`: the
positions of its images in an `ImageSource` (a memory-mapped array, an image folder, a torch or
Hugging Face Dataset, or host memory). Indexing it with a batch's positions reads those images
and moves them to the device. Training, evaluation, the attacks, the probe and the prefix cache
index their sets batch-wise only, so they run unchanged on either kind; subsets and
concatenations of a streamed set are new positions, never reads.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .images import channels_first, item_image, stacked

Reader = Callable[[np.ndarray], Any]  # sorted positions -> (n, C, H, W) tensor or array


class ImageSource:
    """Random access to `length` images of one shape and dtype through `reader`.

    reader: ascending positions -> their images, (n, C, H, W), uint8 pixels or floats on the
    model's scale. Callers may ask in any order and repeat positions; the source sorts them.
    """

    def __init__(self, length: int, image_shape: Sequence[int], dtype: torch.dtype, reader: Reader,
                 describe: str = "images"):
        self.length, self.image_shape, self.dtype = int(length), tuple(int(s) for s in image_shape), dtype
        self.reader, self.describe = reader, describe

    def __len__(self) -> int:
        return self.length

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length, *self.image_shape)

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """The images at `positions`, in that order, on the CPU."""
        if len(positions) == 0:
            return torch.empty((0, *self.image_shape), dtype=self.dtype)
        unique, inverse = np.unique(positions, return_inverse=True)
        batch = self.reader(unique)
        batch = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch))
        if tuple(batch.shape[1:]) != self.image_shape or len(batch) != len(unique):
            raise UserError(f"{self.describe}: expected images of shape {self.image_shape}, read "
                            f"{tuple(batch.shape[1:])} (every image of a streamed set must have one size)")
        batch = batch.to(self.dtype)
        check_finite(batch, self.describe, unique)  # as each batch is read: a streamed set is never read whole
        return batch[torch.from_numpy(inverse.reshape(-1))]


def check_finite(images: torch.Tensor, describe: str, positions: np.ndarray | None = None, chunk: int = 1024) -> None:
    """Refuse float images holding NaN or infinite pixels: one of them turns every weight into NaN, and the
    result would still read as forgotten. positions: where the images sit in their set (for the message);
    checked `chunk` images at a time, so a large set needs no mask of its own size."""
    if not images.is_floating_point():
        return
    chunks = [torch.isfinite(images[i:i + chunk]).flatten(1).all(1) for i in range(0, len(images), chunk)]
    bad = torch.nonzero(~torch.cat(chunks)).flatten().cpu().numpy() if chunks else np.zeros(0, np.int64)
    if len(bad):
        first = int(bad[0] if positions is None else positions[bad[0]])
        images_hold = ("images" if len(bad) > 1 else "image") + (" read" if positions is not None else "") + \
            (" hold" if len(bad) > 1 else " holds")
        raise UserError(f"{describe}: {len(bad)} {images_hold} NaN or infinite pixels (the first at position "
                        f"{first}); repair or drop them")


def array_source(array: np.ndarray | torch.Tensor, channels_last: bool = False,
                 describe: str = "images") -> ImageSource:
    """A source over an array (a np.memmap reads only the rows asked for), NCHW or, with
    channels_last, NHWC (transposed per batch)."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
        return ImageSource(len(tensor), tensor.shape[1:], tensor.dtype, lambda pos: tensor[torch.from_numpy(pos)],
                           describe)
    shape = (array.shape[3], array.shape[1], array.shape[2]) if channels_last else array.shape[1:]
    dtype = torch.uint8 if array.dtype == np.uint8 else torch.float32

    def reader(pos: np.ndarray) -> np.ndarray:
        rows = np.asarray(array[pos])
        return rows.transpose(0, 3, 1, 2) if channels_last else rows

    return ImageSource(len(array), shape, dtype, reader, describe)


def chain_sources(sources: Sequence[ImageSource]) -> ImageSource:
    """One source over several, one after the other (positions offset by the lengths before)."""
    first = sources[0]
    if any(s.image_shape != first.image_shape or s.dtype != first.dtype for s in sources):
        raise UserError("streamed sets to join hold images of different shapes or types: "
                        + ", ".join(f"{s.describe} {s.image_shape} {s.dtype}" for s in sources))
    starts = np.cumsum([0] + [len(s) for s in sources])

    def reader(pos: np.ndarray) -> torch.Tensor:
        which = np.searchsorted(starts, pos, side="right") - 1
        return torch.cat([sources[i].read(pos[which == i] - starts[i]) for i in np.unique(which)])

    return ImageSource(int(starts[-1]), first.image_shape, first.dtype, reader, " + ".join(s.describe for s in sources))


class StreamedImages:
    """The images of a streamed set: positions in a source, read per batch onto `device`.

    Behaves like the (N, C, H, W) image tensor where the library reads one: `shape`, `dtype`,
    `device`, `len`, and indexing with a slice, an integer array or tensor, or a boolean mask
    (which reads). `select` gives a subset without reading.
    """

    def __init__(self, source: ImageSource, positions: np.ndarray | None = None,
                 device: torch.device | str = "cpu"):
        self.source = source
        self.positions = np.arange(len(source)) if positions is None else np.asarray(positions, dtype=np.int64)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.positions), *self.source.image_shape))

    @property
    def dtype(self) -> torch.dtype:
        return self.source.dtype

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def _positions(self, index: Any) -> np.ndarray:
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        picked = self.positions[index]
        return np.atleast_1d(picked)

    def __getitem__(self, index: Any) -> torch.Tensor:
        images = self.source.read(self._positions(index)).to(self.device, non_blocking=True)
        return images[0] if isinstance(index, (int, np.integer)) else images

    def select(self, index: Any) -> StreamedImages:
        return StreamedImages(self.source, self._positions(index), self.device)

    def to(self, device: torch.device | str) -> StreamedImages:
        return StreamedImages(self.source, self.positions, device)

    def __repr__(self) -> str:
        return f"StreamedImages({len(self)} of {self.source.describe}, {self.dtype}, read onto {self.device})"


Images = torch.Tensor | StreamedImages


def take(images: Images, index: torch.Tensor) -> Images:
    """The images at `index` (positions or a boolean mask): a tensor for a tensor, positions for a stream."""
    if isinstance(images, StreamedImages):
        return images.select(index)
    return images[index.to(images.device)]


def concat(parts: Sequence[Images]) -> Images:
    """Images one after the other; streamed as soon as one part is (tensors then join as host sources)."""
    if not any(isinstance(p, StreamedImages) for p in parts):
        return torch.cat(list(parts))
    device = next(p.device for p in parts if isinstance(p, StreamedImages))
    streams = [p if isinstance(p, StreamedImages) else StreamedImages(array_source(p.cpu(), describe="tensor"))
               for p in parts]
    sources: list[ImageSource] = []
    for s in streams:
        if not any(s.source is known for known in sources):
            sources.append(s.source)
    if len(sources) == 1:
        return StreamedImages(sources[0], np.concatenate([s.positions for s in streams]), device)
    starts = np.cumsum([0] + [len(s) for s in sources])
    offset = {id(s): int(starts[i]) for i, s in enumerate(sources)}
    return StreamedImages(chain_sources(sources), np.concatenate([s.positions + offset[id(s.source)] for s in streams]),
                          device)


def channel_stats(images: Images, sample: int = 20000, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of pixels in [0, 1], over evenly spaced images (all up to `sample`).

    Read in chunks and summed in float64, so a streamed set never comes into memory whole and
    the in-memory and streamed paths give the same statistics.
    """
    n = len(images)
    positions = np.arange(n) if n <= sample else np.linspace(0, n - 1, sample).round().astype(np.int64)
    total = squares = None
    count = 0
    for start in range(0, len(positions), chunk):
        batch = images[torch.from_numpy(positions[start:start + chunk])].double()
        batch = batch / 255.0 if images.dtype == torch.uint8 else batch
        flat = batch.transpose(0, 1).reshape(batch.shape[1], -1)
        total = flat.sum(1) if total is None else total + flat.sum(1)
        squares = (flat ** 2).sum(1) if squares is None else squares + (flat ** 2).sum(1)
        count += flat.shape[1]
    if total is None:
        raise UserError("the training set holds no images")
    mean = total / count
    std = (squares / count - mean ** 2).clamp_min(0).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) + 1e-6 for v in std)


def dataset_source(dataset: Any, describe: str) -> ImageSource:
    """A source over a map-style torch Dataset of (image, label) items, read item by item."""
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise UserError(f"{describe} cannot be streamed: it has no random access (an IterableDataset); pass a "
                        "map-style Dataset, or gather it in memory (stream=False)")
    if len(dataset) == 0:
        raise UserError(f"{describe} holds no images: give at least one")
    first = channels_first(item_image(dataset[0], describe)[None], describe)

    def reader(pos: np.ndarray) -> torch.Tensor:
        return channels_first(stacked([item_image(dataset[int(i)], describe) for i in pos], f"{describe} images"),
                              describe)

    dtype = torch.uint8 if first.dtype == torch.uint8 else torch.float32
    return ImageSource(len(dataset), first.shape[1:], dtype, reader, describe)
