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

import numpy as np

from ..errors import UserError, path_kind, regular_file, shown
from ..ledger import file_hash
from .raw import RawDataset, class_labels


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
    fix = "replace it with the official file"
    regular_file(path, "dataset file", fix)  # before opening: a FIFO would block for ever
    if not path.is_file():
        raise UserError(f"dataset file missing: {shown(path)} (the folder must hold the official files)")
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any failure to decode a damaged file is the file's fault
        raise UserError(f"cannot read dataset file {shown(path)}: {type(exc).__name__}: {shown(exc)} "
                        "(replace it with the official file)") from None


def default_data_root() -> Path:
    env = os.environ.get("PRUNELORA_DATA")
    return Path(env) if env else Path.home() / ".cache" / "prunelora" / "data"


def data_root_folder(data_root: str | Path | None) -> Path:
    """The folder --data-root names (default_data_root() without one); one that is missing, or a file rather than
    a folder, is a UserError saying which."""
    if not data_root:
        return default_data_root()
    root = Path(data_root).expanduser()
    kind = path_kind(root)
    if kind == "missing":
        raise UserError(f"data root {shown(data_root)} does not exist (point --data-root at the folder holding the "
                        "dataset)")
    if kind != "a folder":
        what = "a file" if kind == "file" else kind
        raise UserError(f"data root {shown(data_root)} is {what}, not a folder (point --data-root at the folder "
                        "holding the dataset)")
    return root


def md5sum(path: Path) -> str:
    return file_hash(path, "md5")


def extract_archive(archive: Path, spec: ArchiveSpec, root: Path) -> Path:
    """Check the archive's md5, then extract only the expected member files into root."""
    actual = md5sum(archive)
    if actual != spec.md5:
        raise UserError(f"checksum mismatch for {shown(archive)}: md5 {actual}, expected {spec.md5} (delete it and "
                        "download again)")
    wanted = {f"{spec.folder}/{n}" for n in (*spec.train_files, spec.test_file, spec.meta_file)}
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            if {m.name for m in members} != wanted:
                raise UserError(f"archive {shown(archive)} lacks some of {sorted(wanted)}")
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
            f"dataset not found in {shown(root / spec.folder)} and the download from {spec.url} failed ({shown(exc)}); "
            f"put the official '{spec.folder}' folder under --data-root"
        ) from None
    return extract_archive(archive, spec, root)


def _locate(name: str, root: Path, allow_download: bool) -> Path:
    spec = CIFAR[name]
    if path_kind(root) not in ("a folder", "missing"):  # a missing default root is made by the download
        data_root_folder(root)
    for candidate in (root / spec.folder, root):
        if (candidate / spec.test_file).is_file():
            return candidate
    archive = root / Path(spec.url).name
    if archive.is_file():
        return extract_archive(archive, spec, root)
    if not allow_download:
        raise UserError(f"dataset {name} not found: looked for {shown(root / spec.folder)} (set --data-root to the "
                        f"folder holding '{spec.folder}')")
    return download(spec, root)


def _read_split(folder: Path, files: tuple[str, ...], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file in files:
        path = folder / file
        if not path.is_file():
            raise UserError(f"dataset file missing: {shown(path)} (the folder must hold the official batch files)")
        batch = restricted_load(path)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise UserError(f"dataset file {shown(path)} does not hold the keys b'data' and {label_key!r}")
        try:
            data = np.asarray(batch[b"data"])
        except (TypeError, ValueError):  # a ragged list
            data = np.asarray(None)
        if data.dtype.kind not in "ui" or data.ndim != 2 or data.shape[1] != 3072 or \
                (data.size and not 0 <= data.min() <= data.max() <= 255):
            raise UserError(f"dataset file {shown(path)} holds data of shape {data.shape} and type {data.dtype}, "
                            "expected (N, 3072) uint8 pixels (replace it with the official file)")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.append(class_labels(batch[label_key], f"dataset file {shown(path)}", count=len(data)))
    return np.concatenate(images), np.concatenate(labels)


def load_cifar(name: str, root: Path, allow_download: bool = True) -> RawDataset:
    spec = CIFAR[name]
    folder = _locate(name, root, allow_download)
    train_x, train_y = _read_split(folder, spec.train_files, spec.label_key)
    test_x, test_y = _read_split(folder, (spec.test_file,), spec.label_key)
    meta = restricted_load(folder / spec.meta_file)
    if not isinstance(meta, dict) or spec.names_key not in meta:
        raise UserError(f"dataset file {shown(folder / spec.meta_file)} does not hold {spec.names_key!r}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[spec.names_key]]
    for split, labels in (("train", train_y), ("test", test_y)):
        class_labels(labels, f"{name} {split} labels in {shown(folder)}", len(names))
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
