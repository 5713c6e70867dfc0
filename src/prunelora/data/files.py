"""The user's own data from files: an image folder, an .npz, or a Hugging Face `datasets` folder.

- Image folder: `DIR/train/<class>/*.png|jpg` and optionally `DIR/test/<class>/...` (without
  train/ and test/, DIR's class folders are the training set). Images are read with Pillow, as
  grayscale when every one is, else RGB, and resized to one size (the first image's, or
  `image_size`). Class names are the folder names, sorted.
- .npz: `images` (uint8, NHWC or NCHW) and `labels`, optionally `test_images` / `test_labels`
  and `class_names`. Read with allow_pickle=False.
- A `datasets` folder written by `save_to_disk`: a DatasetDict with train (and test) splits, or
  one Dataset (the training set), with an image column and a label column (ClassLabel names kept).
Without a test split, TA and the membership attacks have no test set and read NaN.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .sources import RawDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def is_data_path(name: str) -> bool:
    """Whether --dataset names the user's files rather than a built-in dataset."""
    return "/" in name or name.endswith(".npz") or Path(name).exists()


def load_files(path: str, image_size: int | None = None) -> RawDataset:
    location = Path(path).expanduser()
    if not location.exists():
        raise UserError(f"data not found: {location} (an image folder, an .npz or a datasets folder)")
    if location.suffix == ".npz":
        raw = load_npz(location)
    elif (location / "dataset_dict.json").is_file() or (location / "dataset_info.json").is_file():
        raw = load_hf_datasets(location)
    elif location.is_dir():
        raw = load_image_folder(location, image_size)
    else:
        raise UserError(f"{location} is neither an image folder, an .npz nor a datasets folder")
    if raw.num_classes < 2:
        raise UserError(f"{location} holds {raw.num_classes} class; unlearning a class needs at least two")
    return raw


def _stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = images.astype(np.float32) / 255.0
    mean = tuple(float(v) for v in pixels.mean(axis=(0, 2, 3)))
    return mean, tuple(float(v) + 1e-6 for v in pixels.std(axis=(0, 2, 3)))


def _nchw(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise UserError(f"{where}: images must be uint8 pixels, got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise UserError(f"{where}: images must have shape (N, C, H, W) or (N, H, W, C), got {images.shape}")
    if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images)


def _raw(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
         class_names: list[str]) -> RawDataset:
    images, labels = train
    if test is None:
        test = (np.zeros((0, *images.shape[1:]), np.uint8), np.zeros(0, np.int64))
    if test[0].shape[1:] != images.shape[1:]:
        raise UserError(f"{name}: test images {test[0].shape[1:]} differ from training images {images.shape[1:]}")
    mean, std = _stats(images)
    return RawDataset(name, images, labels.astype(np.int64), test[0], test[1].astype(np.int64), class_names,
                      mean, std)


def load_npz(path: Path) -> RawDataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz without pickles ({exc})") from None
    if "images" not in arrays or "labels" not in arrays:
        raise UserError(f"{path} must hold 'images' and 'labels' arrays (it has: {', '.join(arrays)})")
    train = (_nchw(arrays["images"], str(path)), arrays["labels"].reshape(-1))
    test = None
    if "test_images" in arrays:
        test = (_nchw(arrays["test_images"], str(path)), arrays["test_labels"].reshape(-1))
    labels = np.concatenate([train[1]] + ([test[1]] if test else []))
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else \
        [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    return _raw(path.stem, train, test, names)


def _read_images(files: list[Path], size: tuple[int, int] | None, gray: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("L" if gray else "RGB")
                if size is not None and image.size != size:
                    image = image.resize(size, Image.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"cannot read image {file} ({exc})") from None
        out.append(array[None] if gray else array.transpose(2, 0, 1))
    return np.stack(out)


def load_image_folder(root: Path, image_size: int | None = None) -> RawDataset:
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "test" if (root / "test").is_dir() else None
    names = sorted(d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if test_dir is not None:
        names = sorted(set(names) | {d.name for d in test_dir.iterdir() if d.is_dir()})

    def listing(folder: Path) -> tuple[list[Path], np.ndarray]:
        files, labels = [], []
        for label, name in enumerate(names):
            found = sorted(f for f in (folder / name).glob("*") if f.suffix.lower() in IMAGE_SUFFIXES) \
                if (folder / name).is_dir() else []
            files += found
            labels += [label] * len(found)
        return files, np.array(labels, dtype=np.int64)

    train_files, train_labels = listing(train_dir)
    if not train_files:
        raise UserError(f"{train_dir} holds no images in class folders (expected {train_dir}/<class>/*.png)")
    from PIL import Image

    try:
        with Image.open(train_files[0]) as first:
            size = (image_size, image_size) if image_size else first.size
    except OSError as exc:
        raise UserError(f"cannot read image {train_files[0]} ({exc})") from None
    test_files, test_labels = listing(test_dir) if test_dir is not None else ([], np.zeros(0, np.int64))
    gray = _all_gray(train_files + test_files)
    train = (_read_images(train_files, size, gray), train_labels)
    test = (_read_images(test_files, size, gray), test_labels) if test_files else None
    return _raw(root.name, train, test, names)


def _all_gray(files: list[Path]) -> bool:
    from PIL import Image

    for file in files:
        try:
            with Image.open(file) as image:
                if image.mode not in ("L", "1", "I", "I;16"):
                    return False
        except OSError as exc:
            raise UserError(f"cannot read image {file} ({exc})") from None
    return True


def load_hf_datasets(path: Path) -> RawDataset:
    try:
        import datasets
    except ImportError:
        raise UserError('reading a datasets folder needs the hf extra: pip install "prunelora[hf]"') from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{path} is not a datasets folder written by save_to_disk ({exc})") from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if "train" not in splits:
        raise UserError(f"{path} has no 'train' split (it has: {', '.join(splits)})")
    train = splits["train"]
    image_col = next((c for c, f in train.features.items() if isinstance(f, datasets.Image)), None)
    label_col = next((c for c, f in train.features.items() if isinstance(f, datasets.ClassLabel)), None) or \
        ("label" if "label" in train.features else None)
    if image_col is None or label_col is None:
        raise UserError(f"{path} needs an Image column and a label column (it has: {', '.join(train.features)})")
    feature = train.features[label_col]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else \
        [str(i) for i in range(int(max(train[label_col])) + 1)]

    def arrays(split) -> tuple[np.ndarray, np.ndarray]:
        first = split[0][image_col]
        gray = first.mode in ("L", "1")
        images = np.stack([np.asarray(img.convert("L" if gray else "RGB"), dtype=np.uint8) for img in split[image_col]])
        return _nchw(images, str(path)), np.asarray(split[label_col], dtype=np.int64)

    test = arrays(splits["test"]) if "test" in splits else None
    return _raw(path.name, arrays(train), test, names)
