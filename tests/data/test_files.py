"""The user's data files (image folder, .npz, datasets folder), read into memory or streamed per batch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelora.data import class_splits, load_dataset
from prunelora.data.files import load_files
from prunelora.data.stream import ImageSource
from prunelora.errors import UserError

from ..helpers import run_cli


def write_image_folder(root: Path, per_class: int = 12, classes: int = 4, prefix: bool = False,
                       shared: bool = False) -> Path:
    """digits as PNG files: root/train/<name>/*.png and root/test/<name>/*.png. prefix: files named c<k>_<i>.png
    (unique across classes); shared: one more image, shared.png, in every class folder (an ambiguous bare name)."""
    from PIL import Image

    raw = load_dataset("digits")
    for split, images, labels in (("train", raw.train_images, raw.train_labels),
                                  ("test", raw.test_images, raw.test_labels)):
        for label in range(classes):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            pictures = images[labels == label]
            for i, image in enumerate(pictures[:per_class]):
                Image.fromarray(image[0]).save(folder / (f"c{label}_{i}.png" if prefix else f"{i}.png"))
            if shared:
                Image.fromarray(pictures[per_class][0]).save(folder / "shared.png")
    return root


def write_datasets_folder(root: Path, count: int = 60) -> Path:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    raw = load_dataset("digits")
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(i) for i in range(10)])})

    def split(images, labels):
        return datasets.Dataset.from_dict({"image": [Image.fromarray(i[0]) for i in images[:count]],
                                           "label": labels[:count].tolist()}, features=features)

    datasets.DatasetDict(train=split(raw.train_images, raw.train_labels),
                         test=split(raw.test_images, raw.test_labels)).save_to_disk(str(root))
    return root


def write_npz(path: Path, compressed: bool = False) -> Path:
    raw = load_dataset("digits")
    save = np.savez_compressed if compressed else np.savez
    save(path, images=raw.train_images[:80].transpose(0, 2, 3, 1), labels=raw.train_labels[:80],
         test_images=raw.test_images[:40], test_labels=raw.test_labels[:40], class_names=np.array(list("abcdefghij")))
    return path


@pytest.mark.parametrize("kind", ["folder", "npz", "datasets"])
def test_streamed_files_read_nothing_up_front_and_give_the_same_data(kind, tmp_path):
    path = {"folder": lambda: write_image_folder(tmp_path / "images"),
            "npz": lambda: write_npz(tmp_path / "d.npz"),
            "datasets": lambda: write_datasets_folder(tmp_path / "ds")}[kind]()
    memory, streamed = load_files(str(path)), load_files(str(path), stream=True)
    assert isinstance(streamed.train_images, ImageSource) and isinstance(streamed.test_images, ImageSource)
    assert (memory.mean, memory.std, memory.class_names) == (streamed.mean, streamed.std, streamed.class_names)
    np.testing.assert_array_equal(memory.train_labels, streamed.train_labels)
    reference = class_splits(memory, 1, seed=0)
    # Files opened for streaming, and files read into memory then streamed from host memory.
    for splits in (class_splits(streamed, 1, seed=0), class_splits(memory, 1, seed=0, stream=True)):
        for name, data in splits.named().items():
            assert data.streamed, name
            assert torch.equal(data.images[torch.arange(len(data))], reference.named()[name].images), name


def test_a_compressed_npz_cannot_be_streamed(tmp_path):
    path = write_npz(tmp_path / "d.npz", compressed=True)
    assert load_files(str(path)).train_images.shape == (80, 1, 16, 16)
    with pytest.raises(UserError, match="compressed"):
        load_files(str(path), stream=True)


@pytest.mark.slow
def test_reproduce_with_stream_gives_the_same_rows(tmp_path, capsys):
    """--stream reads the user's image folder per batch: every number of the run is the in-memory run's."""
    data = write_image_folder(tmp_path / "images", per_class=15)
    rows = {}
    for stream in (False, True):
        out = tmp_path / f"run-{stream}"
        rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--no-progress", "--dataset", data, "--forget-class",
                              "c2", "--models", "resnet18", "--methods", "retrain,finetune,prunelora,rl",
                              "--out", out, *(["--stream"] if stream else [])], capsys)
        assert rc == 0, err
        results = json.loads((out / "results.json").read_text())
        assert results["config"]["data"]["stream"] is stream
        rows[stream] = [{k: r[k] for k in ("method", "epochs", "ua", "ra", "ta", "mia_efficacy", "probe_forget_acc")}
                        for r in results["rows"]]
    assert rows[True] == rows[False]


def write_mixed_folder(root: Path, classes: int = 3, per_class: int = 12) -> Path:
    """An image folder as users keep one: class folders only (no train/ or test/), images of several sizes and
    modes (RGB, grayscale, RGBA, palette)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"k{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            height, width = (int(v) for v in rng.integers(20, 40, 2))
            pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).convert(("RGB", "L", "RGBA", "P")[i % 4]).save(folder / f"{i}.png")
    return root


def test_image_size_resizes_an_image_folder_of_mixed_sizes(tmp_path):
    data = write_mixed_folder(tmp_path / "mixed")
    first = load_files(str(data))
    assert first.shape[0] == 3 and first.shape[1:] != (12, 12)  # the first image's (non-square) size
    square = load_dataset(str(data), image_size=12)
    assert square.shape == (3, 12, 12) and len(square.train_labels) == 36
    streamed = load_dataset(str(data), image_size=12, stream=True)
    assert tuple(streamed.train_images.shape[1:]) == (3, 12, 12)
    assert load_dataset("digits", image_size=12).shape == (1, 12, 12)


def test_image_size_resizes_a_datasets_folder(tmp_path):
    data = write_datasets_folder(tmp_path / "hf", count=20)
    assert load_dataset(str(data), image_size=12).shape == (1, 12, 12)


@pytest.mark.parametrize("dataset", ["cifar10", "npz"])
def test_image_size_is_refused_where_the_arrays_are_used_as_they_are(dataset, tmp_path):
    name = str(write_npz(tmp_path / "d.npz")) if dataset == "npz" else dataset
    with pytest.raises(UserError, match="--image-size resizes an image folder's"):
        load_dataset(name, str(tmp_path), image_size=12)


def test_a_vit_on_images_it_cannot_patch_is_refused_with_the_size_that_fits(tmp_path, capsys):
    data = write_mixed_folder(tmp_path / "mixed")
    out = tmp_path / "run"
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--no-progress", "--dataset", data, "--forget-class", "k1",
                          "--models", "vit", "--out", out], capsys)
    assert rc == 2 and "takes square images whose side is a multiple of its patch (4 pixels)" in err
    assert "give --image-size" in err and "Traceback" not in err and not out.exists()
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--dataset", data, "--image-size", "0", "--out", out], capsys)
    assert rc == 2 and "--image-size 0: give a side between 1 and 4096 pixels" in err and not out.exists()


@pytest.mark.slow
def test_a_folder_without_a_test_split_runs_and_reports_no_test_figures(tmp_path, capsys):
    """Class folders only, images of mixed sizes: the run resizes them, trains, and leaves what needs a test set
    (TA, the attacks, the probe) unmeasured: null in results.json, never NaN, no traceback."""
    data = write_mixed_folder(tmp_path / "mixed")
    out = tmp_path / "run"
    rc, _, err = run_cli(["reproduce", "--preset", "smoke", "--no-progress", "--dataset", data, "--forget-class", "k1",
                          "--image-size", "16", "--models", "resnet18,vit", "--methods", "finetune,prunelora",
                          "--out", out], capsys)
    assert rc == 0, err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    text = (out / "results.json").read_text()
    assert "NaN" not in text and "nan" not in (out / "results.csv").read_text().lower()
    results = json.loads(text)
    assert results["config"]["data"]["image_size"] == 16
    rows = [r for r in results["rows"] if r["method"] == "prunelora"]
    assert rows and all(r["ta"] is None and r["ua"] is not None for r in rows)
