"""Reading an image request and the user's data files as written: the one rule for a file of ids, an empty retain
set refused, files that are not regular UTF-8 files refused in one line (never a hang), the user's strings echoed
escaped, an id column of images refused, and a data root that is a file named as one."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from prunelora.data import class_splits, load_dataset
from prunelora.data.files import load_files
from prunelora.data.ids import read_request
from prunelora.data.sources import data_root_folder, load_cifar
from prunelora.data.text.examples import listed_ids
from prunelora.errors import UserError, shown
from tests.helpers import run_cli, within

from .test_files import write_image_folder
from .test_ids import named_splits, request, write_datasets

QUICK = ["--preset", "smoke", "--models", "resnet18", "--no-progress"]
FIX = "give a UTF-8 text file with one sample id a line, or a .csv with an id column"



def refused(call, *args, **kwargs) -> str:
    with within(10), pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message, message
    return message


def tiny_npz(path: Path, per_class: int = 3) -> Path:
    """Two classes of `per_class` digits each, and a test split."""
    raw = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(raw.train_labels == c)[:per_class] for c in (0, 1)])
    test = np.concatenate([np.flatnonzero(raw.test_labels == c)[:2] for c in (0, 1)])
    np.savez(path, images=raw.train_images[keep], labels=raw.train_labels[keep], test_images=raw.test_images[test],
             test_labels=raw.test_labels[test])
    return path


# -- 1: one rule for a file of ids, both tasks -----------------------------------------------------------------------

def test_both_tasks_read_a_file_of_ids_alike(tmp_path):
    file = tmp_path / "r.txt"
    file.write_text("# a comment\n\n   # an indented comment\n  cat#1.png  \ndoc # not a comment\n\tx\n")
    assert read_request(file) == listed_ids(file) == ["cat#1.png", "doc # not a comment", "x"]


# -- 3: an empty retain set ------------------------------------------------------------------------------------------

def test_a_request_naming_the_whole_training_set_is_refused_even_when_classes_may_empty(tmp_path):
    raw = load_files(str(tiny_npz(tmp_path / "tiny.npz")))
    every = request(tmp_path / "all.txt", *map(str, range(len(raw.train_labels))))
    message = refused(named_splits, raw, every, allow_empty_class=True)
    assert message == (f"{every} leaves no training sample to keep (it names all 6 training samples): nothing would "
                       "be left to train on; name fewer samples")
    # the training subset (--train-per-class 2) holds only named samples: nothing kept either
    some = request(tmp_path / "some.txt", "0", "1", "3", "4")
    assert "it names 4 of the 6 training samples and --train-per-class / --holdout-per-class keep none of the rest" \
        in refused(named_splits, raw, some, per_class=2, allow_empty_class=True)
    assert len(named_splits(raw, some, allow_empty_class=True).retain_train) == 2  # kept where the subset keeps some
    # every class forgotten through the Python API: refused where the splits are built
    assert refused(class_splits, raw, [0, 1]) == ("the request forgets all 6 training samples of tiny: nothing would "
                                                  "be left to keep; forget fewer classes or samples")


def test_the_command_line_refuses_an_empty_retain_set(tmp_path, capsys):
    data = tiny_npz(tmp_path / "tiny.npz")
    every = request(tmp_path / "all.txt", *map(str, range(6)))
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["train", *QUICK, "--dataset", data, "--forget", every, "--allow-empty-class",
                               "--out", out], capsys)
    assert rc == 2, err
    assert err.strip() == (f"prunelora: error: {every} leaves no training sample to keep (it names all 6 training "
                           "samples): nothing would be left to train on; name fewer samples")
    assert "Traceback" not in stdout and not out.exists()


# -- 4, 5: files that are not regular UTF-8 files --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["r.txt", "r.csv"])
def test_a_fifo_request_is_refused_without_blocking(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    assert refused(read_request, fifo) == f"request file {fifo} is a named pipe (FIFO), not a file: {FIX}"
    assert refused(read_request, "/dev/zero") == f"request file /dev/zero is a device, not a file: {FIX}"
    assert refused(read_request, tmp_path) == f"request file {tmp_path} is a folder, not a file: {FIX}"


def test_a_fifo_npz_or_image_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "d.npz"
    os.mkfifo(fifo)
    assert refused(load_files, str(fifo)) == (f"--dataset {fifo} is a named pipe (FIFO), not a file: give an .npz "
                                              "written by np.savez (or an image folder, or a datasets folder)")
    folder = write_image_folder(tmp_path / "images", per_class=2, classes=2)
    os.mkfifo(folder / "train" / "c1" / "9.png")
    assert refused(load_files, str(folder)) == (f"image {folder}/train/c1/9.png is a named pipe (FIFO), not a file: "
                                                "give image files (PNG, JPEG, ...) in the class folders")


def test_a_binary_request_is_refused_in_one_line(tmp_path):
    binary = tmp_path / "r.txt"
    binary.write_bytes(b"12\n\xff\xfe")
    assert refused(read_request, binary) == f"cannot read request file {binary} (not UTF-8 text: byte 0xff on line " \
                                            f"2): {FIX}"
    binary.write_bytes(b"1\n2\x00\n")
    assert refused(read_request, binary) == f"cannot read request file {binary} (a NUL byte on line 2: a binary " \
                                            f"file, not text): {FIX}"


# -- 6: the user's strings, escaped ----------------------------------------------------------------------------------

def test_shown_escapes_control_characters_and_keeps_printable_text():
    assert shown("caf\u00e9 r\u00e9sum\u00e9 1") == "caf\u00e9 r\u00e9sum\u00e9 1"
    assert shown("a\x1b[31mb\nc\rd\te\x00\u202ef\U000e0001") == "a\\x1b[31mb\\nc\\rd\\te\\x00\\u202ef\\U000e0001"
    assert shown(Path("/tmp/x")) == "/tmp/x"


def test_ids_and_paths_echoed_in_errors_are_escaped(digits_raw, tmp_path):
    red = request(tmp_path / "r.txt", "0", "\x1b[31mred")
    assert refused(named_splits, digits_raw, red) == (
        f"1 id matches no training sample of digits in {red} ('\\x1b[31mred'); its ids are training row indices, "
        "0 to 1436")
    twice = request(tmp_path / "twice.txt", "\x07a", "\x07a")
    assert f"{twice} lists id '\\x07a' twice" in refused(named_splits, digits_raw, twice)
    odd = tmp_path / "new\nline\x1b.txt"
    assert refused(read_request, odd).startswith(f"request file not found: {tmp_path}/new\\nline\\x1b.txt (")


# -- 7: an id column that holds no ids; a data root that is a file ---------------------------------------------------

def test_an_id_column_of_images_or_floats_is_refused(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = write_datasets(tmp_path / "ds", count=12)
    assert refused(load_files, str(folder), id_column="image") == (
        f"{folder}: column 'image' holds PIL images, not ids: give a column of names or numbers to --id-column")
    from PIL import Image

    raw = load_dataset("digits")
    features = datasets.Features({"image": datasets.Image(), "score": datasets.Value("float32"),
                                  "name": datasets.Value("string"), "label": datasets.ClassLabel(names=["0", "1"])})
    rows = {"image": [Image.fromarray(raw.train_images[i][0]) for i in range(4)], "score": [0.5, 1.5, 2.5, 3.5],
            "name": ["a", None, "c", "d"], "label": [0, 1, 0, 1]}
    other = tmp_path / "other"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(other))
    assert "column 'score' holds float32 values, not ids" in refused(load_files, str(other), id_column="score")
    assert refused(load_files, str(other), id_column="name") == \
        f"{other}: id column 'name' has no value in row 1: give every row an id"


def test_a_data_root_that_is_a_file_is_named_a_file(tmp_path, monkeypatch, capsys):
    file = tmp_path / "data.txt"
    file.write_text("not a folder\n")
    fix = "(point --data-root at the folder holding the dataset)"
    assert refused(data_root_folder, str(file)) == f"data root {file} is a file, not a folder {fix}"
    assert refused(data_root_folder, str(tmp_path / "none")) == f"data root {tmp_path / 'none'} does not exist {fix}"
    assert data_root_folder(str(tmp_path)) == tmp_path
    assert refused(load_cifar, "cifar10", file, False) == f"data root {file} is a file, not a folder {fix}"
    # the default root (PRUNELORA_DATA) from the command line
    monkeypatch.setenv("PRUNELORA_DATA", str(file))
    rc, _, err = run_cli(["train", *QUICK, "--dataset", "cifar10", "--out", tmp_path / "out"], capsys)
    assert rc == 2 and err.strip() == f"prunelora: error: data root {file} is a file, not a folder {fix}", err
    assert not (tmp_path / "out").exists()
