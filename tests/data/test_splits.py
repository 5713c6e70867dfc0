"""Class-wise forgetting splits and class-balanced subsets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from prunelora.data import balanced_indices, class_splits
from prunelora.data.raw import RawDataset
from prunelora.errors import UserError


def indexed_raw(train_counts=(7, 5, 9, 6), test_counts=(4, 3, 5, 2), seed=0) -> RawDataset:
    """A dataset whose every image encodes its own index (train: i, test: 10000 + i) in two pixels."""
    rng = np.random.default_rng(seed)

    def make(counts, offset):
        labels = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)
        ids = np.arange(len(labels)) + offset
        images = np.zeros((len(labels), 1, 4, 4), dtype=np.uint8)
        images[:, 0, 0, 0] = ids // 256
        images[:, 0, 0, 1] = ids % 256
        return images, labels

    train_x, train_y = make(train_counts, 0)
    test_x, test_y = make(test_counts, 10000)
    return RawDataset("indexed", train_x, train_y, test_x, test_y, [str(c) for c in range(len(train_counts))],
                      (0.5,), (0.25,))


def ids_of(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() * 256 + images[:, 0, 0, 1].long()).tolist()


@pytest.mark.parametrize("forget", [0, 2, 3])
def test_full_splits_are_disjoint_complete_and_class_wise(forget):
    raw = indexed_raw()
    s = class_splits(raw, forget)
    forget_ids, retain_ids = ids_of(s.forget_train.images), ids_of(s.retain_train.images)
    assert set(forget_ids).isdisjoint(retain_ids)
    assert sorted(forget_ids + retain_ids) == list(range(len(raw.train_labels)))
    test_f, test_r = ids_of(s.test_forget.images), ids_of(s.test_retain.images)
    assert set(test_f).isdisjoint(test_r)
    assert sorted(test_f + test_r) == [10000 + i for i in range(len(raw.test_labels))]
    # every image keeps its own label
    for imageset in (s.forget_train, s.retain_train):
        assert imageset.labels.tolist() == [int(raw.train_labels[i]) for i in ids_of(imageset.images)]
    for imageset in (s.test_forget, s.test_retain):
        assert imageset.labels.tolist() == [int(raw.test_labels[i - 10000]) for i in ids_of(imageset.images)]
    assert set(s.forget_train.labels.tolist()) == {forget}
    assert set(s.test_forget.labels.tolist()) == {forget}
    assert forget not in s.retain_train.labels.tolist()
    assert forget not in s.test_retain.labels.tolist()
    assert len(s.forget_train) == int((raw.train_labels == forget).sum())
    assert s.forget_class == forget and s.num_classes == 4


def test_digits_splits_hold_exactly_n_per_class(digits_splits):
    s = digits_splits
    assert s.forget_train.images.dtype == torch.uint8 and s.forget_train.labels.dtype == torch.int64
    assert s.image_shape == (1, 16, 16)
    assert s.forget_train.labels.tolist() == [3] * 20
    assert s.test_forget.labels.tolist() == [3] * 10
    retain_counts = np.bincount(s.retain_train.labels.numpy(), minlength=10)
    test_counts = np.bincount(s.test_retain.labels.numpy(), minlength=10)
    assert retain_counts.tolist() == [20, 20, 20, 0, 20, 20, 20, 20, 20, 20]
    assert test_counts.tolist() == [10, 10, 10, 0, 10, 10, 10, 10, 10, 10]
    train = s.train
    assert len(train) == 200 and np.bincount(train.labels.numpy()).tolist() == [20] * 10


def test_balanced_subset_is_a_subset_with_n_per_class_and_up_to_what_exists():
    raw = indexed_raw()
    s = class_splits(raw, 1, train_per_class=6, test_per_class=3, seed=5)
    train_ids = ids_of(s.forget_train.images) + ids_of(s.retain_train.images)
    assert len(set(train_ids)) == len(train_ids)
    labels = raw.train_labels[train_ids]
    # classes hold 7, 5, 9, 6 images: at most 6 of each, all 5 of the class that has only 5
    assert np.bincount(labels, minlength=4).tolist() == [6, 5, 6, 6]
    test_labels = raw.test_labels[[i - 10000 for i in ids_of(s.test_forget.images) + ids_of(s.test_retain.images)]]
    assert np.bincount(test_labels, minlength=4).tolist() == [3, 3, 3, 2]


def test_balanced_indices_deterministic_per_seed_and_different_across_seeds(digits_raw):
    labels = digits_raw.train_labels
    a, b = balanced_indices(labels, 15, seed=0), balanced_indices(labels, 15, seed=0)
    c = balanced_indices(labels, 15, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for idx in (a, c):
        assert np.all(np.diff(idx) > 0)  # ascending, no repeats
        assert np.bincount(labels[idx]).tolist() == [15] * 10
    np.testing.assert_array_equal(balanced_indices(labels, None, seed=3), np.arange(len(labels)))


def test_class_splits_deterministic_per_seed(digits_raw):
    s1 = class_splits(digits_raw, 3, 12, 6, seed=7)
    s2 = class_splits(digits_raw, 3, 12, 6, seed=7)
    s3 = class_splits(digits_raw, 3, 12, 6, seed=8)
    for name, a in s1.named().items():
        b = s2.named()[name]
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(s1.retain_train.images, s3.retain_train.images)
    assert not torch.equal(s1.test_retain.images, s3.test_retain.images)


@pytest.mark.parametrize("forget", [-1, 10, 11])
def test_forget_class_out_of_range_is_a_user_error(digits_raw, forget):
    with pytest.raises(UserError, match=f"forget class {forget} is out of range"):
        class_splits(digits_raw, forget, 5, 5)


def test_imageset_subset_and_to(digits_splits):
    data = digits_splits.retain_train
    sub = data.subset(np.array([4, 0, 2]))
    assert torch.equal(sub.images, data.images[[4, 0, 2]])
    assert sub.labels.tolist() == data.labels[[4, 0, 2]].tolist()
    moved = data.to("cpu")
    assert moved.images.device.type == "cpu" and len(moved) == len(data)


def test_no_labels_give_no_indices():
    """A dataset without a test split: a per-class subset of nothing is empty, not an error."""
    for per_class in (None, 5):
        picked = balanced_indices(np.zeros(0, np.int64), per_class, seed=0)
        assert picked.dtype == np.int64 and len(picked) == 0
