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

Sample ids (what a request file names, data/ids.py): an image folder's file paths below DIR
(train/cat/0001.png), an .npz's row indices, a datasets folder's id column (id_column) or row indices.

Checked as the data enters (before anything is written): an .npz and every image file is a regular
file (a FIFO would block the read for ever; checked with os.stat before it is opened), labels are
integers within the class list (without one, every class up to the largest label must have training
images), the training set is not empty, every image file is at most MAX_IMAGE_PIXELS before it is
decoded, a datasets folder's id column holds names or numbers. Paths and values echoed in an error
are shown escaped (errors.shown).

stream=True opens the data without reading its images (data/stream.py): an image folder is read
file by file per batch, a datasets folder row by row (Arrow files are memory-mapped), an .npz
written by np.savez (uncompressed) is memory-mapped. Only labels, file names and a sample for the
channel statistics are read up front.
"""
from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError, regular_file, shown
from ..progress import progress_bars
from .images import channels_last, stacked
from .raw import RawDataset, class_labels, first_repeat
from .stream import ImageSource, StreamedImages, array_source, channel_stats

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# The most pixels one image may have (8192 x 8192, far above a classifier's input), checked as its header is read,
# before anything is decoded: a small PNG can claim 20000 x 20000 pixels and take gigabytes to decode. Set
# prunelora.data.files.MAX_IMAGE_PIXELS higher to read larger images you trust.
MAX_IMAGE_PIXELS = 1 << 26


@contextmanager
def pixel_limit(where: str) -> Iterator[None]:
    """Inside: Pillow refuses any image above MAX_IMAGE_PIXELS when it reads the header (its decompression-bomb
    check, at prunelora's limit and made an error), so nothing that large is decoded."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UserError(f"{shown(where)}: an image of more than {MAX_IMAGE_PIXELS:,} pixels, refused before decoding "
                        "(shrink it, or raise prunelora.data.files.MAX_IMAGE_PIXELS to read larger images you "
                        "trust)") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def open_image(file: Path) -> Any:
    """The image file opened with Pillow (its header read, nothing decoded yet), within the pixel limit."""
    from PIL import Image

    regular_file(file, "image", "give image files (PNG, JPEG, ...) in the class folders")
    try:
        with pixel_limit(str(file)):
            return Image.open(file)
    except OSError as exc:  # UnidentifiedImageError included
        raise UserError(f"cannot read image {shown(file)} ({shown(exc)})") from None


def is_data_path(name: str) -> bool:
    """Whether --dataset names the user's files rather than a built-in dataset."""
    return "/" in name or name.endswith(".npz") or Path(name).exists()


def load_files(path: str, image_size: int | None = None, stream: bool = False, progress: bool = True,
               id_column: str | None = None) -> RawDataset:
    """image_size: an image folder's or a datasets folder's images resized to that side (load_dataset refuses it
    for an .npz). progress: False hides the `datasets` library's progress bars while a datasets folder loads.
    id_column: a datasets folder's column whose values are the sample ids (only a datasets folder has one)."""
    location = Path(path).expanduser()
    if not location.exists():
        raise UserError(f"data not found: {shown(location)} (an image folder, an .npz or a datasets folder)")
    is_hf = (location / "dataset_dict.json").is_file() or (location / "dataset_info.json").is_file()
    if id_column is not None and not is_hf:
        ids = "row indices" if location.suffix == ".npz" else "file paths below the folder"
        raise UserError(f"--id-column reads a column of a datasets folder; the ids of {shown(location)} are its {ids}: "
                        "leave out --id-column")
    if location.suffix == ".npz":
        regular_file(location, "--dataset", "give an .npz written by np.savez (or an image folder, or a datasets "
                     "folder)")
        raw = load_npz(location, stream)
    elif is_hf:
        raw = load_hf_datasets(location, stream, progress, id_column, image_size)
    elif location.is_dir():
        raw = load_image_folder(location, image_size, stream)
    else:
        raise UserError(f"{shown(location)} is neither an image folder, an .npz nor a datasets folder")
    if raw.num_classes < 2:
        raise UserError(f"{shown(location)} holds {raw.num_classes} class; unlearning a class needs at least two")
    return raw


Images = np.ndarray | ImageSource


def _raw(location: Path, train: tuple[Images, np.ndarray], test: tuple[Images, np.ndarray] | None,
         class_names: list[str], **ids: Any) -> RawDataset:
    """The dataset, checked (some training images, labels within the class list), with channel statistics read
    the same way whether its images are in memory or streamed. ids: RawDataset's id fields (train_ids, ...)."""
    name = location.stem if location.suffix == ".npz" else location.name
    images, labels = train
    if len(images) == 0:
        raise UserError(f"{shown(location)} holds no training images")
    if test is None:
        test = (np.zeros((0, *images.shape[1:]), np.uint8), np.zeros(0, np.int64))
    if tuple(test[0].shape[1:]) != tuple(images.shape[1:]):
        raise UserError(f"{shown(name)}: test images {tuple(test[0].shape[1:])} differ from training images "
                        f"{tuple(images.shape[1:])}")
    for split, (imgs, labs) in (("train", train), ("test", test)):
        if len(imgs) != len(labs):
            raise UserError(f"{shown(name)}: {len(imgs)} {split} images but {len(labs)} labels")
    train_labels, test_labels = (class_labels(labs, f"{shown(location)} {split} labels", len(class_names))
                                 for split, labs in (("train", labels), ("test", test[1])))
    source = images if isinstance(images, ImageSource) else array_source(images, describe=name)
    mean, std = channel_stats(StreamedImages(source))
    return RawDataset(name, images, train_labels, test[0], test_labels, class_names, mean, std, **ids)


def implied_classes(train_labels: np.ndarray, where: str, fix: str) -> list[str]:
    """Without a class list the classes are 0 to the largest training label, and each must have training images:
    one stray label (1000 among ten classes) must not build a 1001-class model. fix: how to give the list."""
    present = np.unique(train_labels)
    if not len(present):
        return []  # no training images: _raw says so
    top = int(present[-1])
    missing = np.setdiff1d(np.arange(top + 1), present)
    if len(missing):
        listed = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        have = "has" if len(missing) == 1 else "have"
        raise UserError(f"{shown(where)}: the largest label, {top}, makes {top + 1} classes, but {len(missing)} of "
                        f"them {have} no training images ({listed}); fix the labels, or give {fix} naming every class")
    return [str(c) for c in range(top + 1)]


def npz_memmap(path: Path, key: str) -> np.ndarray:
    """Member `key` of an uncompressed .npz (np.savez) as a read-only memory map: nothing is read until indexed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise UserError(f"{shown(path)}: '{key}' is compressed (np.savez_compressed) and cannot be streamed; "
                            "write it with np.savez, or leave out --stream")
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        local = file.read(30)  # the local file header: name and extra-field lengths at bytes 26-29
        file.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                  + int.from_bytes(local[28:30], "little"))
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(file)
        offset = file.tell()
    if dtype.hasobject:
        raise UserError(f"{shown(path)}: '{key}' holds Python objects; only numeric arrays are read")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _nchw(images: np.ndarray, where: str) -> Images:
    """uint8 images as NCHW: an in-memory array is copied so; a memory map stays on disk, as a source
    that transposes each batch it reads."""
    if images.dtype != np.uint8:
        raise UserError(f"{shown(where)}: images must be uint8 pixels, got {images.dtype}")
    images = images[:, None] if images.ndim == 3 else images
    if images.ndim != 4:
        raise UserError(f"{shown(where)}: images must have shape (N, C, H, W) or (N, H, W, C), got {images.shape}")
    last = channels_last(images.shape)
    if isinstance(images, np.memmap):
        return array_source(images, channels_last=last, describe=where)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2) if last else images)


def load_npz(path: Path, stream: bool = False) -> RawDataset:
    big = ("images", "test_images")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if not (stream and k in big)}
            names = list(data.files)
        if stream:
            arrays.update({k: npz_memmap(path, k) for k in big if k in names})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise UserError(f"{shown(path)} is not a readable .npz without pickles ({shown(exc)})") from None
    if "images" not in arrays or "labels" not in arrays:
        raise UserError(f"{shown(path)} must hold 'images' and 'labels' arrays (it has: "
                        f"{', '.join(map(shown, arrays))})")
    train = (_nchw(arrays["images"], str(path)), class_labels(arrays["labels"].reshape(-1), f"{shown(path)} labels"))
    test = None
    if "test_images" in arrays:
        if "test_labels" not in arrays:
            raise UserError(f"{shown(path)} holds 'test_images' but no 'test_labels'")
        test = (_nchw(arrays["test_images"], str(path)), arrays["test_labels"].reshape(-1))
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else \
        implied_classes(train[1], str(path), "a 'class_names' array")
    return _raw(path, train, test, names)


def resized(image: Any, size: int | tuple[int, int] | None) -> Any:
    """A Pillow image at `size` ((width, height), or a side), bilinear; as it is where size is None or its own."""
    from PIL import Image

    size = (size, size) if isinstance(size, int) else size
    return image if size is None or image.size == size else image.resize(size, Image.BILINEAR)


def _read_images(files: list[Path], size: tuple[int, int] | None, gray: bool) -> np.ndarray:
    out = []
    for file in files:
        try:
            with open_image(file) as image:
                array = np.asarray(resized(image.convert("L" if gray else "RGB"), size), dtype=np.uint8)
        except OSError as exc:
            raise UserError(f"cannot read image {shown(file)} ({shown(exc)})") from None
        out.append(array[None] if gray else array.transpose(2, 0, 1))
    return np.stack(out)


def _file_source(files: list[Path], size: tuple[int, int], gray: bool, describe: str) -> ImageSource:
    """The images of `files`, read with Pillow a batch at a time."""
    return ImageSource(len(files), (1 if gray else 3, size[1], size[0]), torch.uint8,
                       lambda pos: _read_images([files[i] for i in pos], size, gray), describe)


def load_image_folder(root: Path, image_size: int | None = None, stream: bool = False) -> RawDataset:
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
        raise UserError(f"{shown(train_dir)} holds no images in class folders (expected "
                        f"{shown(train_dir)}/<class>/*.png)")
    with open_image(train_files[0]) as first:
        size = (image_size, image_size) if image_size else first.size
    test_files, test_labels = listing(test_dir) if test_dir is not None else ([], np.zeros(0, np.int64))
    gray = _all_gray(train_files + test_files)
    read = (lambda files, part: _file_source(files, size, gray, f"{root}/{part}")) if stream else \
        (lambda files, part: _read_images(files, size, gray))
    train = (read(train_files, "train"), train_labels)
    test = (read(test_files, "test"), test_labels) if test_files else None
    ids = [f.relative_to(root).as_posix() for f in train_files]
    return _raw(root, train, test, names, train_ids=ids, id_kind="path")


def _all_gray(files: list[Path]) -> bool:
    for file in files:
        with open_image(file) as image:
            if image.mode not in ("L", "1", "I", "I;16"):
                return False
    return True


def load_hf_datasets(path: Path, stream: bool = False, progress: bool = True, id_column: str | None = None,
                     image_size: int | None = None) -> RawDataset:
    """progress: False hides the `datasets` library's own progress bars while it loads.
    id_column: the training split's column whose values (as strings) are the sample ids; None: the row index.
    image_size: every image resized to image_size x image_size (bilinear), as an image folder's are."""
    try:
        import datasets
        import datasets.utils.logging
    except ImportError:
        raise UserError('reading a datasets folder needs the hf extra: pip install "prunelora[hf]"') from None
    try:
        with progress_bars(datasets.utils.logging, progress):
            loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{shown(path)} is not a datasets folder written by save_to_disk ({shown(exc)})") from None
    except IndexError:  # a split saved without rows has no data files, and datasets fails to read it
        raise UserError(f"{shown(path)} holds a split with no images (datasets cannot load it): give the training set "
                        "images, and leave out an empty test split") from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if "train" not in splits:
        raise UserError(f"{shown(path)} has no 'train' split (it has: {', '.join(map(shown, splits))})")
    train = splits["train"]
    image_col = next((c for c, f in train.features.items() if isinstance(f, datasets.Image)), None)
    label_col = next((c for c, f in train.features.items() if isinstance(f, datasets.ClassLabel)), None) or \
        ("label" if "label" in train.features else None)
    if image_col is None or label_col is None:
        raise UserError(f"{shown(path)} needs an Image column and a label column (it has: "
                        f"{', '.join(map(shown, train.features))})")
    if len(train) == 0:
        raise UserError(f"{shown(path)} holds no training images (its train split is empty)")

    def pixels(rows: Callable[[], Any], gray: bool) -> np.ndarray:
        """The images rows() decodes (within the pixel limit), as uint8 NCHW of one shape."""
        with pixel_limit(str(path)):
            images = [torch.from_numpy(np.array(resized(img.convert("L" if gray else "RGB"), image_size),
                                                dtype=np.uint8)) for img in rows()]
        return _nchw(stacked(images, f"{shown(path)} images").numpy(), str(path))

    def arrays(split, part: str) -> tuple[Images, np.ndarray]:
        labels = class_labels(split[label_col], f"{shown(path)} {part} labels")
        with pixel_limit(str(path)):
            first = split[0][image_col]
        gray = first.mode in ("L", "1")
        if not stream:
            return pixels(lambda: split[image_col], gray), labels
        column = split.select_columns([image_col])  # rows read from the memory-mapped Arrow files per batch
        return ImageSource(len(split), pixels(lambda: [first], gray).shape[1:], torch.uint8,
                           lambda pos: pixels(lambda: column[pos.tolist()][image_col], gray), f"{path}"), labels

    ids = column_ids(train, id_column, path) if id_column is not None else None
    train_part = arrays(train, "train")
    feature = train.features[label_col]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else \
        implied_classes(train_part[1], str(path), "a ClassLabel label column")
    test = arrays(splits["test"], "test") if len(splits.get("test", [])) else None
    if ids is None:
        return _raw(path, train_part, test, names)
    return _raw(path, train_part, test, names, train_ids=ids, id_kind="column", id_column=id_column)


def column_ids(train: Any, column: str, path: Path) -> list[str]:
    """The training split's `column` as sample ids (strings); a missing column, a column of anything but names or
    numbers (checked on its type, before a value is decoded), an empty value, or a value that names two rows, is a
    UserError."""
    if column not in train.column_names:
        raise UserError(f"{shown(path)} has no id column '{shown(column)}' (its columns: "
                        f"{', '.join(map(shown, train.column_names))}); give one of them to --id-column")
    held = _not_ids(train.features[column])
    if held is not None:
        raise UserError(f"{shown(path)}: column '{shown(column)}' holds {held}, not ids: give a column of names or "
                        "numbers to --id-column")
    values = train[column]
    empty = next((i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())), None)
    if empty is not None:
        raise UserError(f"{shown(path)}: id column '{shown(column)}' has no value in row {empty}: give every row an id")
    ids = [str(v) for v in values]
    twice = first_repeat(ids)
    if twice is not None:
        raise UserError(f"{shown(path)}: id column '{shown(column)}' holds '{shown(twice)}' twice: an id must name one "
                        "sample (give a column of unique values to --id-column)")
    return ids


def _not_ids(feature: Any) -> str | None:
    """None where a datasets column holds names or numbers (strings, integers, class labels); else what it holds,
    in words ('PIL images', 'float32 values', 'lists')."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return None
    if isinstance(feature, datasets.Value):
        kind = feature.dtype
        return None if kind in ("string", "large_string") or kind.startswith(("int", "uint")) else f"{kind} values"
    if isinstance(feature, datasets.Image):
        return "PIL images"
    if isinstance(feature, dict):
        return "records"
    if isinstance(feature, list) or type(feature).__name__ in ("List", "LargeList", "Sequence"):  # by name: the
        return "lists"  # list types differ between datasets releases
    return f"{type(feature).__name__} values"
