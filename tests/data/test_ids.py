"""Forgetting named samples: sample ids of every source, request files, the splits they give, forced inclusion in
the training subset, and every bad request as one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prunelora.config import DataConfig, data_key, fingerprint, resolve
from prunelora.data import balanced_indices, load_dataset, split_by_ids
from prunelora.data.ids import read_request
from prunelora.data.scenarios import request_splits, requests_of
from prunelora.data.splits import train_positions
from prunelora.errors import UserError

from .test_files import write_image_folder, write_npz


def write_folder(root: Path, per_class: int = 6, classes: int = 3) -> Path:
    """digits as PNG files, root/train/c<k>/c<k>_<i>.png (unique names) plus a shared.png in every class folder
    (a bare name that is ambiguous), and a test split."""
    return write_image_folder(root, per_class, classes, prefix=True, shared=True)


def write_datasets(root: Path, count: int = 30, names: list[str] | None = None) -> Path:
    """A datasets folder whose train split has a `name` column (img-0, img-1, ... unless given)."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    raw = load_dataset("digits")
    features = datasets.Features({"image": datasets.Image(), "name": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=[str(i) for i in range(10)])})
    train = datasets.Dataset.from_dict({"image": [Image.fromarray(i[0]) for i in raw.train_images[:count]],
                                        "name": names or [f"img-{i}" for i in range(count)],
                                        "label": raw.train_labels[:count].tolist()}, features=features)
    datasets.DatasetDict(train=train).save_to_disk(str(root))
    return root


def request(path: Path, *ids: str) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path


def named_splits(raw, *files: Path, per_class: int | None = None, stream: bool = False, scenario: str = "named",
                 **extra):
    history = requests_of(raw, scenario, 3, None, None, forget=[str(f) for f in files], train_per_class=per_class,
                          **extra)
    return request_splits(raw, history, per_class, None, 0, "cpu", scenario, stream)


def pixels(file: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(file) as image:
        return torch.from_numpy(np.array(image.convert("L"), dtype=np.uint8))[None]


def read_all(images) -> torch.Tensor:
    """A set's images as one tensor, read through its batches' path where they are streamed."""
    return images[torch.arange(len(images))]


# -- what an id is, per source ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_image_folder_ids_are_paths_below_the_folder_in_any_of_three_forms(tmp_path, stream):
    root = write_folder(tmp_path / "images")
    raw = load_dataset(str(root), stream=stream)
    assert raw.id_kind == "path" and raw.train_ids[:2] == ["train/c0/c0_0.png", "train/c0/c0_1.png"]
    asked = request(tmp_path / "r.txt", "# one of each form", "", "train/c2/c2_4.png", "c1/shared.png", "c0_3.png")
    splits = named_splits(raw, asked, stream=stream)
    expected = ["train/c0/c0_3.png", "train/c1/shared.png", "train/c2/c2_4.png"]  # in dataset order
    assert splits.forget_ids == expected and splits.request_ids == [expected]
    assert splits.forget_train.streamed is stream
    for image, label, name in zip(read_all(splits.forget_train.images), splits.forget_train.labels, expected):
        assert torch.equal(image, pixels(root / name)) and raw.class_names[int(label)] == name.split("/")[1]
    assert len(splits.retain_train) == len(raw.train_labels) - 3 and len(splits.test_forget) == 0
    assert len(splits.test_retain) == len(raw.test_labels) and splits.forget_class is None


def test_streamed_and_in_memory_folders_give_the_same_ids_and_images(tmp_path):
    root = write_folder(tmp_path / "images")
    asked = request(tmp_path / "r.txt", "c0_1.png", "c2/c2_0.png")
    memory, streamed = (named_splits(load_dataset(str(root), stream=s), asked) for s in (False, True))
    assert memory.forget_ids == streamed.forget_ids
    for name in ("forget_train", "retain_train"):
        a, b = getattr(memory, name), getattr(streamed, name)
        assert torch.equal(a.images, read_all(b.images)) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("stream", [False, True])
def test_npz_ids_are_row_indices(tmp_path, stream):
    path = write_npz(tmp_path / "d.npz")
    rows = np.load(path)
    raw = load_dataset(str(path), stream=stream)
    splits = named_splits(raw, request(tmp_path / "r.txt", "41", "3", "0"), stream=stream)
    assert splits.forget_ids == ["0", "3", "41"]
    expected = torch.from_numpy(rows["images"][[0, 3, 41]].transpose(0, 3, 1, 2).copy())
    assert torch.equal(read_all(splits.forget_train.images), expected)
    assert splits.forget_train.labels.tolist() == rows["labels"][[0, 3, 41]].tolist()


@pytest.mark.parametrize("stream", [False, True])
def test_datasets_folder_ids_are_the_id_column_or_the_row_index(tmp_path, stream):
    path = write_datasets(tmp_path / "ds")
    by_name = load_dataset(str(path), stream=stream, id_column="name")
    assert by_name.id_kind == "column" and by_name.train_ids[:2] == ["img-0", "img-1"]
    named = named_splits(by_name, request(tmp_path / "names.txt", "img-7", "img-2"), stream=stream)
    by_row = load_dataset(str(path), stream=stream)
    assert by_row.train_ids[:2] == ["0", "1"]
    rows = named_splits(by_row, request(tmp_path / "rows.txt", "2", "7"), stream=stream)
    assert named.forget_ids == ["img-2", "img-7"] and rows.forget_ids == ["2", "7"]
    digits = load_dataset("digits")
    for splits in (named, rows):
        assert torch.equal(read_all(splits.forget_train.images), torch.from_numpy(digits.train_images[[2, 7]]))
        assert splits.forget_train.labels.tolist() == digits.train_labels[[2, 7]].tolist()


def test_a_missing_id_column_lists_the_columns(tmp_path):
    path = write_datasets(tmp_path / "ds", count=12)
    with pytest.raises(UserError, match=r"has no id column 'nope' \(its columns: image, name, label\)"):
        load_dataset(str(path), id_column="nope")


def test_an_id_column_naming_two_rows_alike_is_refused(tmp_path):
    path = write_datasets(tmp_path / "ds", count=4, names=["a", "b", "c", "b"])
    with pytest.raises(UserError, match="id column 'name' holds 'b' twice: an id must name one sample"):
        load_dataset(str(path), id_column="name")


def test_id_column_is_refused_where_ids_are_not_a_column(tmp_path):
    with pytest.raises(UserError, match="--id-column reads a column of a datasets folder; the ids of digits"):
        load_dataset("digits", id_column="name")
    with pytest.raises(UserError, match="are its row indices"):
        load_dataset(str(write_npz(tmp_path / "d.npz")), id_column="name")


def test_built_in_digits_by_index_through_the_python_api(digits_raw):
    retain, forget = split_by_ids("digits", [1436, 0, "5"])
    assert torch.equal(forget.images, torch.from_numpy(digits_raw.train_images[[0, 5, 1436]]))
    assert forget.labels.tolist() == digits_raw.train_labels[[0, 5, 1436]].tolist()
    assert len(retain) == len(digits_raw.train_labels) - 3
    again = split_by_ids(digits_raw, [0, 5, 1436])[1]
    assert torch.equal(again.images, forget.images)


def test_split_by_ids_reads_a_request_file_and_a_datasets_folder_by_path(tmp_path):
    path = write_datasets(tmp_path / "ds", count=30)
    asked = request(tmp_path / "r.txt", "img-3")
    retain, forget = split_by_ids(path, asked, id_column="name")
    assert len(forget) == 1 and len(retain) == 29
    with pytest.raises(UserError, match="a RawDataset's ids are its train_ids"):
        split_by_ids(load_dataset("digits"), ["0"], id_column="name")


# -- request files ---------------------------------------------------------------------------------------------------

def test_a_csv_request_reads_its_id_column_else_its_first(tmp_path):
    (tmp_path / "a.csv").write_text("reason,id\nGDPR,train/c0/1.png\nasked,\"c1/2.png\"\n")
    (tmp_path / "b.csv").write_text("sample,note\n3,x\n\n7,y\n")
    assert read_request(tmp_path / "a.csv") == ["train/c0/1.png", "c1/2.png"]
    assert read_request(tmp_path / "b.csv") == ["3", "7"]
    with pytest.raises(UserError, match="names no sample"):
        read_request(request(tmp_path / "c.csv", "id"))


# -- forced inclusion under --train-per-class ------------------------------------------------------------------------

def outside_the_draw(raw, per_class: int, cls: int, count: int, seed: int = 0) -> list[int]:
    drawn = set(balanced_indices(raw.train_labels, per_class, seed).tolist())
    return [int(i) for i in np.flatnonzero(raw.train_labels == cls) if i not in drawn][:count]


def test_without_named_samples_the_subset_is_the_seeded_draw(digits_raw):
    labels = digits_raw.train_labels
    for per_class, seed in ((20, 0), (7, 3), (None, 0)):
        assert np.array_equal(train_positions(digits_raw, per_class, seed), balanced_indices(labels, per_class, seed))
        assert np.array_equal(train_positions(digits_raw, per_class, seed, named=np.array([], dtype=np.int64)),
                              balanced_indices(labels, per_class, seed))
    held = balanced_indices(labels, 10, 2)  # the holdout of seed 0
    pool = np.setdiff1d(np.arange(len(labels)), held)
    assert np.array_equal(train_positions(digits_raw, 20, 0, 10), pool[balanced_indices(labels[pool], 20, 0)])


def test_named_samples_are_always_in_the_training_subset(digits_raw, tmp_path):
    named = outside_the_draw(digits_raw, 20, 0, 3) + outside_the_draw(digits_raw, 20, 4, 1)
    splits = named_splits(digits_raw, request(tmp_path / "r.txt", *map(str, named)), per_class=20)
    counts = np.bincount(splits.train.labels.numpy(), minlength=10)
    assert counts.tolist() == [20] * 10  # named ones plus the seeded draw up to --train-per-class
    assert sorted(map(int, splits.forget_ids)) == sorted(named) and len(splits.forget_train) == 4
    assert np.bincount(splits.retain_train.labels.numpy(), minlength=10).tolist() == [17, 20, 20, 20, 19] + [20] * 5
    # The rest of each class comes from the seeded draw: class 0 keeps the draw's first 17 others.
    positions = train_positions(digits_raw, 20, 0, named=np.array(named))
    drawn = balanced_indices(digits_raw.train_labels, 20, 0)
    assert set(named) <= set(positions.tolist())
    assert len(set(positions.tolist()) - set(named) - set(drawn.tolist())) == 0
    assert splits.subset_key is not None


def test_named_samples_already_in_the_draw_leave_the_subset_and_its_key_alone(digits_raw, tmp_path):
    drawn = balanced_indices(digits_raw.train_labels, 20, 0)
    splits = named_splits(digits_raw, request(tmp_path / "r.txt", *map(str, drawn[[0, 50, 150]])), per_class=20)
    assert splits.subset_key is None
    assert torch.equal(splits.train.labels, torch.from_numpy(digits_raw.train_labels[drawn]))


def test_the_holdout_never_holds_a_named_sample(digits_raw):
    labels = digits_raw.train_labels
    held = balanced_indices(labels, 10, 2)  # seed 0's holdout, drawn with seed + 2
    named = held[labels[held] == 1][:4]
    positions = train_positions(digits_raw, None, 0, 10, named=named)
    assert set(named.tolist()) <= set(positions.tolist())
    holdout = np.setdiff1d(np.arange(len(labels)), positions)
    assert np.bincount(labels[holdout], minlength=10).tolist() == [10] * 10
    untouched = [c for c in range(10) if c != 1]  # only class 1's holdout had to change
    assert np.array_equal(holdout[np.isin(labels[holdout], untouched)], held[np.isin(labels[held], untouched)])


def test_a_class_named_past_train_per_class_keeps_them_all_when_allowed(digits_raw, tmp_path):
    named = np.flatnonzero(digits_raw.train_labels == 2)[:25]
    asked = request(tmp_path / "r.txt", *map(str, named))
    with pytest.raises(UserError, match=r"leaves class 2 no training sample to keep \(it names 25 of its samples and "
                                        r"--train-per-class 20 keeps no more\)"):
        named_splits(digits_raw, asked, per_class=20)
    splits = named_splits(digits_raw, asked, per_class=20, allow_empty_class=True)
    assert np.bincount(splits.train.labels.numpy(), minlength=10)[2] == 25 and len(splits.forget_train) == 25
    assert 2 not in splits.retain_train.labels.tolist()


def test_a_sequence_of_request_files_forgets_file_after_file(digits_raw, tmp_path):
    first = outside_the_draw(digits_raw, 20, 0, 2)
    second = outside_the_draw(digits_raw, 20, 5, 3)
    files = [request(tmp_path / "a.txt", *map(str, first)), request(tmp_path / "b.txt", *map(str, second))]
    history = requests_of(digits_raw, "sequential", 3, None, None, forget=[str(f) for f in files],
                          train_per_class=20)
    assert [r.describe(digits_raw.class_names) for r in history] == ["2 named samples (a.txt)",
                                                                     "3 named samples (b.txt)"]
    one = request_splits(digits_raw, history[:1], 20, None, 0, "cpu", "sequential", every=history)
    two = request_splits(digits_raw, history, 20, None, 0, "cpu", "sequential")
    assert torch.equal(one.train.labels, two.train.labels)  # one subset (and one original) for the sequence
    assert set(map(int, two.forget_ids)) == set(first + second)  # the named samples of both, forced in
    assert [len(p) for p in two.request_sets] == [2, 3] and len(one.forget_train) == 2
    assert [sorted(map(int, ids)) for ids in two.request_ids] == [sorted(first), sorted(second)]
    assert one.new_forget.labels.tolist() == [0, 0] and two.new_forget.labels.tolist() == [5, 5, 5]


# -- bad requests ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lines,message", [
    (["0", "99999", "abc", "-1", "x"], "4 ids match no training sample of digits in {file} ('99999', 'abc', '-1', "
                                       "...); its ids are training row indices, 0 to 1436"),
    (["4", "9", "4"], "{file} lists id '4' twice: each sample is forgotten once (remove the repeat)"),
    (["# nothing", ""], "request file {file} names no sample: list the ids to forget, one a line"),
])
def test_bad_requests_are_one_line(digits_raw, tmp_path, lines, message):
    file = request(tmp_path / "r.txt", *lines)
    with pytest.raises(UserError) as caught:
        named_splits(digits_raw, file)
    assert str(caught.value) == message.format(file=file) and "\n" not in str(caught.value)


def test_an_ambiguous_bare_name_names_two_candidates(tmp_path):
    raw = load_dataset(str(write_folder(tmp_path / "images")))
    with pytest.raises(UserError) as caught:
        named_splits(raw, request(tmp_path / "r.txt", "shared.png"))
    assert "id 'shared.png' in" in str(caught.value)
    assert "is the file name of 3 training files (train/c0/shared.png, train/c1/shared.png, ...)" in str(caught.value)
    with pytest.raises(UserError, match="both name train/c0/c0_1.png"):
        named_splits(raw, request(tmp_path / "twice.txt", "c0_1.png", "train/c0/c0_1.png"))
    with pytest.raises(UserError, match=r"1 id matches no training sample of images .* its ids are file paths "
                                        r"below the dataset folder such as 'train/c0/c0_0.png'"):
        named_splits(raw, request(tmp_path / "none.txt", "c9/c9_0.png"))


def test_emptying_a_class_is_refused_unless_allowed(tmp_path):
    raw = load_dataset(str(write_folder(tmp_path / "images", per_class=2)))
    every = [i for i in raw.train_ids if i.startswith("train/c1/")]
    asked = request(tmp_path / "r.txt", *every)
    with pytest.raises(UserError, match=r"leaves class 1 \(c1\) no training sample to keep \(it names all 3 of its "
                                        "training samples\\): the model could not keep that class; name fewer of "
                                        "its samples, or give --allow-empty-class"):
        named_splits(raw, asked)
    splits = named_splits(raw, asked, allow_empty_class=True)
    assert len(splits.forget_train) == 3 and 1 not in splits.retain_train.labels.tolist()


def test_a_sample_named_by_two_files_of_a_sequence_is_refused(digits_raw, tmp_path):
    files = [request(tmp_path / "a.txt", "1", "2"), request(tmp_path / "b.txt", "3", "2")]
    with pytest.raises(UserError, match=r"a.txt and .*b.txt both name 2: each sample is forgotten once"):
        named_splits(digits_raw, *files, scenario="sequential")


def test_a_missing_or_unreadable_request_file(digits_raw, tmp_path):
    with pytest.raises(UserError, match="request file not found: .*none.txt"):
        named_splits(digits_raw, tmp_path / "none.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(UserError, match="cannot read request file .*bin.txt"):
        named_splits(digits_raw, tmp_path / "bin.txt")
    with pytest.raises(UserError, match="request file .* is a folder, not a file"):
        named_splits(digits_raw, tmp_path)


# -- the config ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    ({"data": {"forget": ["r.txt"], "forget_ratio": 0.1}}, "--forget names the samples to forget and --forget-ratio "
                                                           "draws them at random: give one"),
    ({"data": {"forget": ["r.txt"], "forget_class": 3}}, "--forget and --forget-class both say what to forget"),
    ({"data": {"forget": ["r.txt"], "scenario": "random"}}, "--forget names the samples to forget, --scenario random "
                                                            "chooses them"),
    ({"data": {"forget": ["r.txt"], "scenario": "class"}}, "leave out --scenario"),
    ({"data": {"forget": ["a.txt", "b.txt"]}}, "several are requests in order, with --scenario sequential"),
    ({"data": {"forget": ["a.txt"], "scenario": "sequential", "requests": [3, 5]}}, "leave out --requests"),
    ({"data": {"forget": ["a.txt"], "requests": [3, 5]}}, "leave out --requests"),
    ({"data": {"scenario": "named"}}, "--scenario named needs --forget FILE"),
    ({"data": {"id_column": "name"}}, "--id-column goes with --forget"),
    ({"data": {"allow_empty_class": True}}, "--allow-empty-class goes with --forget"),
    ({"data": {"forget": []}}, "--forget needs a request file"),
])
def test_contradictory_settings_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        resolve(preset="smoke", overrides=overrides)


def test_forget_selects_the_named_scenario_and_sequential_keeps_the_files_in_order():
    assert resolve(preset="smoke", overrides={"data": {"forget": "r.txt"}}).data.scenario == "named"
    config = resolve(preset="smoke", overrides={"data": {"forget": "a.txt,b.txt", "scenario": "sequential"}})
    assert config.data.forget == ["a.txt", "b.txt"] and config.data.class_wise is False


def test_runs_without_forget_keep_their_fingerprints():
    """Computed by the code before --forget existed: a run folder, its stages and its cached originals stay valid.
    The default prune mode became auto (it trains a different network), so only a run that names mask keeps it."""
    config = resolve(preset="smoke", overrides={"unlearn": {"prune_mode": "mask"}})
    assert fingerprint("reproduce", config.identity()) == "e789d1c9ea1c"
    assert fingerprint("reproduce", resolve(preset="smoke").identity()) != "e789d1c9ea1c"
    assert fingerprint(data_key(config.data)) == "3cabba27cda9"
    assert set(data_key(DataConfig(forget=["r.txt"]))) - set(data_key(DataConfig())) == {"forget"}


def test_the_original_is_keyed_on_the_subset_named_samples_force(digits_raw, tmp_path):
    from prunelora.driver import Experiment, ImageTask

    def key(**data) -> str:
        config = resolve(preset="smoke", overrides={"models": ["resnet18"], "methods": ["finetune"],
                                                    "out": str(tmp_path / "out"), "data": data})
        return Experiment(config, torch.device("cpu"), ImageTask, progress=False).original_key("resnet18", 0)

    assert key() == "a5afd183bec0"  # the key runs without --forget have always had
    drawn = balanced_indices(digits_raw.train_labels, 24, 0)
    inside = request(tmp_path / "in.txt", *map(str, drawn[:3]))
    outside = request(tmp_path / "out.txt", *map(str, outside_the_draw(digits_raw, 24, 3, 2)))
    assert key(forget=[str(inside)]) == "a5afd183bec0"  # the same subset: the same original
    assert key(forget=[str(outside)]) != "a5afd183bec0"
    assert not (tmp_path / "out").exists()
