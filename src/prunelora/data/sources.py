"""Where images come from: scikit-learn's bundled digits, CIFAR-10/100 in the official python layout.

CIFAR batch files are pickles. They are read with a restricted unpickler that admits only the
numpy types those files hold, so a tampered file cannot run code. When a CIFAR folder is missing
and downloads are allowed, the official archive is fetched, its md5 checked, and extracted.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..ledger import file_hash
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


@dataclass(frozen=True)
class ArchiveSpec:
    url: str
    md5: str
    folder: str  # the folder the archive extracts to
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes


CIFAR = {
    "cifar10": ArchiveSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
    ),
    "cifar100": ArchiveSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
    ),
}

# Official training-set channel statistics; one normalisation is used everywhere (docs/design.md, trap 10).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays, dtypes and plain containers."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle's API
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; avoid the deprecation shim
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def restricted_load(path: Path) -> dict:
    """Read one dataset pickle safely; a refused or broken file is the user's problem, said in one line."""
    if not path.is_file():
        raise UserError(f"dataset file missing: {path} (the folder must hold the official files)")
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any failure to decode a damaged file is the file's fault
        raise UserError(f"cannot read dataset file {path}: {type(exc).__name__}: {exc} "
                        "(replace it with the official file)") from None


def default_data_root() -> Path:
    env = os.environ.get("PRUNELORA_DATA")
    return Path(env) if env else Path.home() / ".cache" / "prunelora" / "data"


def md5sum(path: Path) -> str:
    return file_hash(path, "md5")


def extract_archive(archive: Path, spec: ArchiveSpec, root: Path) -> Path:
    """Check the archive's md5, then extract only the expected member files into root."""
    actual = md5sum(archive)
    if actual != spec.md5:
        raise UserError(f"checksum mismatch for {archive}: md5 {actual}, expected {spec.md5} (delete it and download again)")
    wanted = {f"{spec.folder}/{n}" for n in (*spec.train_files, spec.test_file, spec.meta_file)}
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            if {m.name for m in members} != wanted:
                raise UserError(f"archive {archive} lacks some of {sorted(wanted)}")
            for member in members:
                target = staging / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
        final = root / spec.folder
        os.replace(staging / spec.folder, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(spec: ArchiveSpec, root: Path, timeout: float = 30.0) -> Path:
    """Fetch the official archive to a temporary name, verify it, extract it; raise UserError when offline."""
    archive = root / Path(spec.url).name
    partial = archive.with_suffix(archive.suffix + ".part")
    try:
        with urllib.request.urlopen(spec.url, timeout=timeout) as response:
            root.mkdir(parents=True, exist_ok=True)  # only once the server answered: offline runs write nothing
            with open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        os.replace(partial, archive)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"dataset not found in {root / spec.folder} and the download from {spec.url} failed ({exc}); "
            f"put the official '{spec.folder}' folder under --data-root"
        ) from None
    return extract_archive(archive, spec, root)


def _locate(name: str, root: Path, allow_download: bool) -> Path:
    spec = CIFAR[name]
    for candidate in (root / spec.folder, root):
        if (candidate / spec.test_file).is_file():
            return candidate
    archive = root / Path(spec.url).name
    if archive.is_file():
        return extract_archive(archive, spec, root)
    if not allow_download:
        raise UserError(f"dataset {name} not found: looked for {root / spec.folder} (set --data-root to the folder holding '{spec.folder}')")
    return download(spec, root)


def _read_split(folder: Path, files: tuple[str, ...], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file in files:
        path = folder / file
        if not path.is_file():
            raise UserError(f"dataset file missing: {path} (the folder must hold the official batch files)")
        batch = restricted_load(path)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise UserError(f"dataset file {path} does not hold the keys b'data' and {label_key!r}")
        try:
            data = np.asarray(batch[b"data"])
        except (TypeError, ValueError):  # a ragged list
            data = np.asarray(None)
        if data.dtype.kind not in "ui" or data.ndim != 2 or data.shape[1] != 3072 or \
                (data.size and not 0 <= data.min() <= data.max() <= 255):
            raise UserError(f"dataset file {path} holds data of shape {data.shape} and type {data.dtype}, expected "
                            "(N, 3072) uint8 pixels (replace it with the official file)")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.append(class_labels(batch[label_key], f"dataset file {path}", count=len(data)))
    return np.concatenate(images), np.concatenate(labels)


def load_cifar(name: str, root: Path, allow_download: bool = True) -> RawDataset:
    spec = CIFAR[name]
    folder = _locate(name, root, allow_download)
    train_x, train_y = _read_split(folder, spec.train_files, spec.label_key)
    test_x, test_y = _read_split(folder, (spec.test_file,), spec.label_key)
    meta = restricted_load(folder / spec.meta_file)
    if not isinstance(meta, dict) or spec.names_key not in meta:
        raise UserError(f"dataset file {folder / spec.meta_file} does not hold {spec.names_key!r}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[spec.names_key]]
    for split, labels in (("train", train_y), ("test", test_y)):
        class_labels(labels, f"{name} {split} labels in {folder}", len(names))
    mean, std = CIFAR_STATS[name]
    return RawDataset(name, train_x, train_y, test_x, test_y, names, mean, std)


def load_digits(image_size: int = 16, test_fraction: float = 0.2) -> RawDataset:
    """scikit-learn's bundled 8x8 digits, upsampled to image_size, with a fixed stratified split."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    pixels = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=0
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    train = images[train_idx].astype(np.float32) / 255.0
    mean, std = (float(train.mean()),), (float(train.std()),)
    return RawDataset("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                      [str(d) for d in range(10)], mean, std, mirror_invariant=False)


DATASETS = ("digits", "cifar10", "cifar100")


def load_dataset(name: str, data_root: str | None = None, allow_download: bool = True,
                 stream: bool = False, progress: bool = True) -> RawDataset:
    """A built-in dataset by name, or the user's files by path (data/files.py).

    stream: the user's files are opened, not read (their images are read per batch); the built-in
    datasets are read into host memory either way (subsets() then streams them from there).
    progress: False hides the `datasets` library's own progress bars while a datasets folder loads.
    """
    from .files import is_data_path, load_files

    if name not in DATASETS and is_data_path(name):
        return load_files(name, stream=stream, progress=progress)
    if name == "digits":
        return load_digits()
    if name in CIFAR:
        root = Path(data_root) if data_root else default_data_root()
        if data_root and not Path(data_root).is_dir():
            raise UserError(f"data root {data_root} does not exist (point --data-root at the folder holding the dataset)")
        return load_cifar(name, root, allow_download)
    raise UserError(f"unknown dataset '{name}' (choose from: {', '.join(DATASETS)}, or give the path of an image "
                    "folder, an .npz or a datasets folder)")
