"""Which loader reads a dataset: a built-in one by name (data/sources.py), the user's files by path
(data/files.py). It sits above both so that neither loader knows the other."""
from __future__ import annotations

from ..errors import UserError, shown
from .files import is_data_path, load_files
from .raw import RawDataset
from .sources import CIFAR, DATASETS, data_root_folder, load_cifar, load_digits


def load_dataset(name: str, data_root: str | None = None, allow_download: bool = True,
                 stream: bool = False, progress: bool = True, id_column: str | None = None,
                 image_size: int | None = None) -> RawDataset:
    """A built-in dataset by name, or the user's files by path (data/files.py).

    stream: the user's files are opened, not read (their images are read per batch); the built-in
    datasets are read into host memory either way (subsets() then streams them from there).
    progress: False hides the `datasets` library's own progress bars while a datasets folder loads.
    id_column: a datasets folder's column holding the sample ids (a built-in dataset's ids are its indices).
    image_size: every image resized to that side (an image folder, a datasets folder, digits); None: their own.
    """
    if image_size is not None and (name in DATASETS or is_data_path(name)) and not resizable(name):
        raise UserError(f"--image-size resizes an image folder's, a datasets folder's or digits' images; "
                        f"{shown(name)}'s are used at their own size: leave out --image-size (an .npz's arrays: "
                        "resize them before saving)")
    if name not in DATASETS and is_data_path(name):
        return load_files(name, image_size=image_size, stream=stream, progress=progress, id_column=id_column)
    if id_column is not None and name in DATASETS:
        raise UserError(f"--id-column reads a column of a datasets folder; the ids of {name} are its training "
                        "indices (0, 1, ...): leave out --id-column")
    if name == "digits":
        return load_digits() if image_size is None else load_digits(image_size)
    if name in CIFAR:
        return load_cifar(name, data_root_folder(data_root), allow_download)
    raise UserError(f"unknown dataset '{name}' (choose from: {', '.join(DATASETS)}, or give the path of an image "
                    "folder, an .npz or a datasets folder)")


def resizable(name: str) -> bool:
    """Whether --image-size can resize this dataset's images (digits, an image folder, a datasets folder; not
    CIFAR's or an .npz's arrays)."""
    if name in DATASETS:
        return name == "digits"
    return is_data_path(name) and not name.endswith(".npz")
