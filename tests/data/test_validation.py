"""Data is checked where it enters (issue 19, part 3), in every form: files, tensors, arrays, Datasets,
DataLoaders, streamed. A mistake is one UserError line; from the CLI, exit 2 with nothing written."""
from __future__ import annotations

import pickle
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import prunelora
from prunelora.data import ImageSet, balanced_indices, class_splits, load_dataset
from prunelora.data.files import MAX_IMAGE_PIXELS, load_files
from prunelora.data.user import as_imageset
from prunelora.errors import UserError

from ..helpers import run_cli, write_fake_cifar
from ..zoo import TorchvisionResNet18

QUIET = ["--preset", "smoke", "--threads", "1", "--no-progress"]
LETTERS = np.array(list("abcdefghij"))


def refused(argv: list, tmp_path: Path, capsys) -> str:
    """The CLI's answer to a user mistake: exit 2, one line, no traceback, no --out folder. Returns the line."""
    out = tmp_path / "out"
    rc, stdout, err = run_cli([*argv, *QUIET, "--out", out], capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunelora: error: "), err
    assert "Traceback" not in stdout + err
    assert not out.exists()
    return lines[0]


@pytest.fixture(scope="module")
def digits(digits_raw) -> tuple[np.ndarray, np.ndarray]:
    """50 digits images (uint8, 1 x 16 x 16, 5 of every class) and their int64 labels."""
    index = balanced_indices(digits_raw.train_labels, 5, 0)
    return digits_raw.train_images[index], digits_raw.train_labels[index]


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray, **arrays) -> Path:
    np.savez(path, images=images, labels=labels, **arrays)
    return path


def write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_png_header(path: Path, width: int, height: int) -> None:
    """A 100-byte PNG whose header claims width x height 8-bit gray pixels (decoding it would need them all)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def image_folder(root: Path, digits, classes=("cat", "dog"), empty=("fox",)) -> Path:
    """root/train/<class>/*.png, 4 digits each, and empty class folders."""
    images, _ = digits
    for k, name in enumerate(classes):
        for i in range(4):
            write_png(root / "train" / name / f"{i}.png", images[4 * k + i][0])
    for name in empty:
        (root / "train" / name).mkdir(parents=True)
    return root


def write_datasets_folder(root: Path, images: list, labels: list, class_label: bool = True) -> Path:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    label = datasets.ClassLabel(names=list("abc")) if class_label else datasets.Value("int64")
    features = datasets.Features({"image": datasets.Image(), "label": label})
    rows = [Image.fromarray(i) if isinstance(i, np.ndarray) else i for i in images]
    datasets.Dataset.from_dict({"image": rows, "label": labels}, features=features).save_to_disk(str(root))
    return root


FORMS = {
    "tensors": lambda x, y: (torch.from_numpy(x), torch.from_numpy(y)),
    "arrays": lambda x, y: (x, y),
    "dataset": lambda x, y: TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
    "dataloader": lambda x, y: DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=7),
    "imageset": lambda x, y: ImageSet(torch.from_numpy(x), torch.from_numpy(y)),
}


def read_all(data, name: str = "retain", stream: bool = False) -> ImageSet:
    """as_imageset, then every image read (a streamed set is checked as its batches are read)."""
    found = as_imageset(data, name, stream=stream)
    found.images[torch.arange(len(found))]
    return found


class Items(Dataset):
    """(image, label) items exactly as given."""

    def __init__(self, images: list, labels: list):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


# -- 1. NaN or infinite pixels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
@pytest.mark.parametrize("form", FORMS)
def test_nan_or_infinite_pixels_are_refused_in_every_form(form, stream, digits):
    images, labels = digits
    floats = images.astype(np.float32) / 255
    floats[[2, 5, 7], 0, 3, 3] = [np.nan, np.inf, -np.inf]
    with pytest.raises(UserError, match=r"^retain: 3 images( read)? hold NaN or infinite pixels \(the first at "
                                        r"position 2\); repair or drop them$"):
        read_all(FORMS[form](floats, labels), stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
def test_unlearn_refuses_nan_pixels_instead_of_reporting_forgotten(stream, digits):
    images, labels = digits
    floats = torch.from_numpy(images).float() / 255
    retain, forget = labels != 3, labels == 3
    bad = floats[retain].clone()
    bad[4, 0, 0, 0] = float("nan")
    with pytest.raises(UserError, match="retain: 1 image( read)? holds NaN or infinite pixels"):
        prunelora.unlearn(TorchvisionResNet18(), (bad, torch.from_numpy(labels[retain])),
                          (floats[forget], torch.from_numpy(labels[forget])), method="finetune", epochs=1,
                          batch_size=64, stream=stream)


# -- 2. every class of the request has training images --------------------------------------------------------

@pytest.mark.slow
def test_a_forget_class_without_training_images_is_refused_in_an_npz(digits, tmp_path, capsys):
    images, labels = digits
    keep = labels != 3
    path = write_npz(tmp_path / "d.npz", images[keep], labels[keep], class_names=LETTERS)
    line = refused(["reproduce", "--dataset", path, "--forget-class", "3"], tmp_path, capsys)
    assert line.endswith("class 3 (d) has no training images in d: there is nothing to forget (add its images, "
                         "or forget another class)")
    # A class to keep needs training images too.
    line = refused(["reproduce", "--dataset", path, "--forget-class", "5"], tmp_path, capsys)
    assert "class 3 (d) has no training images in d: the model never learns it, so it cannot be kept" in line
    # Sequential requests, and the Python API's class_splits, say the same.
    line = refused(["reproduce", "--dataset", path, "--scenario", "sequential", "--requests", "1,3"], tmp_path,
                   capsys)
    assert "class 3 (d) has no training images" in line
    with pytest.raises(UserError, match="class 3 .d. has no training images"):
        class_splits(load_files(str(path)), 3)


@pytest.mark.slow
def test_an_empty_class_folder_is_refused_whether_forgotten_or_kept(digits, tmp_path, capsys):
    root = image_folder(tmp_path / "pets", digits)
    line = refused(["reproduce", "--dataset", root, "--forget-class", "fox"], tmp_path, capsys)
    assert line.endswith("class 2 (fox) has no training images in pets: there is nothing to forget (add its "
                         "images, or forget another class)")
    line = refused(["reproduce", "--dataset", root, "--forget-class", "cat"], tmp_path, capsys)
    assert "class 2 (fox) has no training images in pets: the model never learns it" in line


# -- 3. labels: integers, within the class list --------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda y: y.astype(np.float64) + 0.5, "d.npz labels: labels must be integer class indices, got float64 (50,)"),
    (lambda y: y.astype(np.float32), "d.npz labels: labels must be integer class indices, got float32 (50,)"),
    (lambda y: np.where(np.arange(len(y)) == 7, -1, y), "d.npz labels: label -1 is out of range (class indices run "
                                                        "from 0); fix or drop those samples"),
    (lambda y: np.where(np.arange(len(y)) == 7, 1000, y),
     "d.npz: the largest label, 1000, makes 1001 classes, but 990 of them have no training images (10, 11, 12, 13, "
     "14, ...); fix the labels, or give a 'class_names' array naming every class"),
    (lambda y: np.where(y == 3, 11, y), "d.npz: the largest label, 11, makes 12 classes, but 2 of them have no "
                                        "training images (3, 10)"),
], ids=["non-integral", "integral-floats", "negative", "stray-1000", "gap"])
def test_bad_npz_labels_are_refused_at_load(change, message, digits, tmp_path, capsys):
    images, labels = digits
    path = write_npz(tmp_path / "d.npz", images, change(labels))
    assert message in refused(["reproduce", "--dataset", path], tmp_path, capsys)


@pytest.mark.slow
def test_labels_outside_the_class_list_are_refused(digits, tmp_path, capsys):
    """class_names fix the class count: a label past them is refused, in the training and the test labels."""
    images, labels = digits

    def first(value: int) -> np.ndarray:
        return np.where(np.arange(len(labels)) == 0, value, labels)

    for arrays, message in [
        ({"labels": first(12), "class_names": LETTERS},
         "d.npz train labels: label 12 is out of range (class indices run from 0 to 9); fix or drop those samples"),
        ({"labels": labels, "test_labels": first(-1)}, "d.npz test labels: label -1 is out of range"),
        ({"labels": labels, "test_labels": first(10), "class_names": LETTERS}, "d.npz test labels: label 10 is out"),
    ]:
        test = {"test_images": images} if "test_labels" in arrays else {}
        path = write_npz(tmp_path / "d.npz", images, **arrays, **test)
        assert message in refused(["reproduce", "--dataset", path], tmp_path, capsys)


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
@pytest.mark.parametrize("form", FORMS)
def test_negative_labels_are_refused_in_every_form(form, stream, digits):
    images, labels = digits
    bad = labels.copy()
    bad[9] = -1
    with pytest.raises(UserError, match=r"^retain: label -1 is out of range"):
        read_all(FORMS[form](images, bad), stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
def test_float_labels_of_dataset_items_are_refused_not_truncated(stream, digits):
    images, labels = digits
    items = Items(list(torch.from_numpy(images)), [float(v) + 0.7 for v in labels])
    with pytest.raises(UserError, match="retain: labels must be 50 integer class indices, got float"):
        read_all(items, stream=stream)


def test_labels_beyond_the_models_outputs_are_refused(digits):
    images, labels = digits
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    wide = y[y != 3].clone()
    wide[0] = 12
    with pytest.raises(UserError, match=r"^retain: label 12 is out of range for a model with 10 outputs "
                                        r"\(classes 0 to 9\)"):
        prunelora.unlearn(TorchvisionResNet18(), (x[y != 3], wide), (x[y == 3], y[y == 3]), epochs=1)


@pytest.mark.slow
def test_a_datasets_folder_with_label_minus_1_or_a_stray_label_is_refused(digits, tmp_path, capsys):
    images, labels = digits
    pictures = [i[0] for i in images[:9]]
    path = write_datasets_folder(tmp_path / "ds", pictures, [0, 1, 2] * 2 + [0, 1, -1])
    assert "ds train labels: label -1 is out of range" in refused(["reproduce", "--dataset", path], tmp_path, capsys)
    path = write_datasets_folder(tmp_path / "ds2", pictures, [0, 1, 2] * 2 + [0, 1, 1000], class_label=False)
    line = refused(["reproduce", "--dataset", path], tmp_path, capsys)
    assert "the largest label, 1000, makes 1001 classes" in line and "give a ClassLabel label column" in line


# -- 4. empty sets -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
@pytest.mark.parametrize("form", FORMS)
def test_empty_sets_are_refused_in_every_form(form, stream, digits):
    images, labels = digits
    with pytest.raises(UserError, match="^forget holds no images: give at least one$"):
        as_imageset(FORMS[form](images[:0], labels[:0]), "forget", stream=stream)


@pytest.mark.parametrize("empty", ["retain", "forget"])
def test_unlearn_refuses_an_empty_retain_or_forget_set(empty, digits):
    images, labels = digits
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    sets = {"retain": (x[y != 3], y[y != 3]), "forget": (x[y == 3], y[y == 3])}
    sets[empty] = (x[:0], y[:0])
    with pytest.raises(UserError, match=f"^{empty} holds no images"):
        prunelora.unlearn(TorchvisionResNet18(), sets["retain"], sets["forget"], epochs=1)


@pytest.mark.slow
def test_empty_training_data_from_files_is_refused(digits, tmp_path, capsys):
    images, labels = digits
    path = write_npz(tmp_path / "d.npz", images[:0], labels[:0], class_names=LETTERS)
    assert "d.npz holds no training images" in refused(["reproduce", "--dataset", path], tmp_path, capsys)
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list("ab"))})
    datasets.Dataset.from_dict({"image": [], "label": []}, features=features).save_to_disk(str(tmp_path / "ds"))
    assert "ds holds a split with no images" in refused(["reproduce", "--dataset", tmp_path / "ds"], tmp_path, capsys)


# -- 5. images of one shape ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
def test_images_of_different_shapes_are_refused(stream, digits):
    images, labels = digits
    mixed = list(torch.from_numpy(images))
    mixed[3] = torch.zeros(1, 20, 20, dtype=torch.uint8)
    message = r"retain images differ in shape \(\(1, 16, 16\), \(1, 20, 20\)\): give images of one size"
    with pytest.raises(UserError, match=message):
        read_all(Items(mixed, labels.tolist()), stream=stream)
    if not stream:
        with pytest.raises(UserError, match=message):
            read_all((mixed, labels))
        with pytest.raises(UserError, match="retain: reading a batch failed .*stack.*; a batch stacks images of one "
                                            "size"):
            read_all(DataLoader(Items(mixed, labels.tolist()), batch_size=8))


@pytest.mark.parametrize("forget_images, message", [
    (lambda x: x.repeat(1, 3, 1, 1), "forget holds uint8 pixels of shape (3, 16, 16) but retain uint8 pixels of shape "
                                     "(1, 16, 16): give every set images of one shape and kind"),
    (lambda x: x.float() / 255, "forget holds floats of shape (1, 16, 16) but retain uint8 pixels"),
], ids=["shape", "kind"])
def test_retain_and_forget_of_different_images_are_refused(forget_images, message, digits):
    images, labels = digits
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    with pytest.raises(UserError, match=re.escape(message)):
        prunelora.unlearn(TorchvisionResNet18(), (x[y != 3], y[y != 3]), (forget_images(x[y == 3]), y[y == 3]),
                          epochs=1)


def test_a_datasets_folder_of_different_image_sizes_is_refused(digits, tmp_path, capsys):
    images, _ = digits
    pictures = [i[0] for i in images[:5]] + [np.zeros((20, 20), np.uint8)]
    path = write_datasets_folder(tmp_path / "ds", pictures, [0, 1, 2, 0, 1, 2])
    assert "images differ in shape ((16, 16), (20, 20))" in refused(["reproduce", "--dataset", path], tmp_path,
                                                                     capsys)


# -- 6. a model without weights ------------------------------------------------------------------------------------

def test_a_model_on_the_meta_device_is_refused(digits):
    images, labels = digits
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    with torch.device("meta"):
        model = TorchvisionResNet18()
    message = r"^the model has no weights \(its tensors are on the meta device\): materialise it and load its weights"
    for stream in (False, True):
        with pytest.raises(UserError, match=message):
            prunelora.unlearn(model, (x[y != 3], y[y != 3]), (x[y == 3], y[y == 3]), epochs=1, stream=stream)
    with pytest.raises(UserError, match=message):
        prunelora.plan(model, x[:2])


# -- 7. image headers against a pixel limit ------------------------------------------------------------------------

@pytest.mark.parametrize("side", [20000, 9000])  # beyond Pillow's own error, and between our limit and its warning
def test_an_image_header_claiming_too_many_pixels_is_refused_before_decoding(side, digits, tmp_path, capsys):
    from PIL import Image

    assert side * side > MAX_IMAGE_PIXELS
    root = image_folder(tmp_path / "pets", digits, empty=())
    write_png_header(root / "train" / "dog" / "big.png", side, side)
    before = Image.MAX_IMAGE_PIXELS
    line = refused(["reproduce", "--dataset", root], tmp_path, capsys)
    assert line.endswith(f"{root / 'train' / 'dog' / 'big.png'}: an image of more than {MAX_IMAGE_PIXELS:,} pixels, "
                         "refused before decoding (shrink it, or raise prunelora.data.files.MAX_IMAGE_PIXELS to read "
                         "larger images you trust)")
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's own limit restored


def test_a_datasets_folder_holding_an_oversized_image_is_refused(digits, tmp_path, capsys):
    images, _ = digits
    big = tmp_path / "big.png"
    write_png_header(big, 20000, 20000)
    pictures = [i[0] for i in images[:5]] + [{"bytes": big.read_bytes(), "path": None}]
    path = write_datasets_folder(tmp_path / "ds", pictures, [0, 1, 2, 0, 1, 2])
    assert f"{path}: an image of more than {MAX_IMAGE_PIXELS:,} pixels" in refused(["reproduce", "--dataset", path],
                                                                                   tmp_path, capsys)


# -- 8. CIFAR batch files of the wrong types -----------------------------------------------------------------------

@pytest.mark.parametrize("replace, message", [
    ({b"data": ["abc"] * 20}, "data_batch_1 holds data of shape (20,) and type <U3, expected (N, 3072) uint8 pixels"),
    ({b"labels": ["cat"] * 20}, "data_batch_1: labels must be 20 integer class indices, got <U3 (20,)"),
    ({b"labels": [2.5] * 20}, "data_batch_1: labels must be 20 integer class indices, got float64 (20,)"),
    ({b"labels": [10] * 20}, "cifar10 train labels in "),
], ids=["data-of-strings", "labels-of-strings", "float-labels", "label-10"])
def test_a_cifar_batch_of_the_wrong_types_is_one_line(replace, message, tmp_path, capsys):
    written = write_fake_cifar(tmp_path / "root", per_class=2)
    data, labels = written["data_batch_1"]
    with open(written["folder"] / "data_batch_1", "wb") as handle:
        pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": data, **replace}, handle, protocol=2)
    line = refused(["reproduce", "--dataset", "cifar10", "--data-root", tmp_path / "root", "--no-download"], tmp_path,
                   capsys)
    assert message in line
    if replace.get(b"labels") == [10] * 20:
        assert "label 10 is out of range (class indices run from 0 to 9)" in line


# -- 9. Hugging Face folders: safetensors only, quiet under --no-progress --------------------------------------------

@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from ..zoo import hf_models

    folder = tmp_path_factory.mktemp("hf") / "resnet"
    hf_models()["resnet"].save_pretrained(folder)
    return folder


def test_a_pickled_hf_checkpoint_is_refused_without_unpickling(hf_folder, tmp_path, capsys, monkeypatch):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(hf_folder, folder)
    torch.save({}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    line = refused(["unlearn", "--model", f"hf:{folder}", "--method", "lora"], tmp_path, capsys)
    assert line.endswith(f"{folder} holds pytorch_model.bin, a pickle, and no .safetensors weights: only safetensors "
                         "are loaded, nothing is unpickled (load it where you trust it and save it again: "
                         "model.save_pretrained(NEW_DIR, safe_serialization=True))")


def test_library_progress_bars_are_hidden_while_loading_when_progress_is_off(hf_folder, digits, tmp_path,
                                                                             monkeypatch):
    import datasets
    import datasets.utils.logging
    import transformers
    import transformers.utils.logging

    from prunelora.models.user_models import load_user_model

    seen = {}
    load_model, load_disk = transformers.AutoModelForImageClassification.from_pretrained, datasets.load_from_disk

    def model_loader(*args, **kwargs):
        seen["transformers"] = transformers.utils.logging.is_progress_bar_enabled()
        return load_model(*args, **kwargs)

    def disk_loader(*args, **kwargs):
        seen["datasets"] = datasets.utils.logging.is_progress_bar_enabled()
        return load_disk(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageClassification, "from_pretrained", model_loader)
    monkeypatch.setattr(datasets, "load_from_disk", disk_loader)
    images, _ = digits
    path = write_datasets_folder(tmp_path / "ds", [i[0] for i in images[:6]], [0, 1, 2] * 2)
    for progress in (False, True):
        load_user_model(f"hf:{hf_folder}", progress=progress)
        load_dataset(str(path), progress=progress)
        assert seen == {"transformers": progress, "datasets": progress}
        assert transformers.utils.logging.is_progress_bar_enabled() and datasets.utils.logging.is_progress_bar_enabled()
