"""Forget requests: a class, a random share, a sequence; sizes, disjointness, determinism, bad requests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from prunelora.data.scenarios import request_splits, requests_of
from prunelora.errors import UserError


def splits_after(raw, scenario, k=None, ratio=None, requests=None, seed=0, forget_class=3, per_class=None):
    history = requests_of(raw, scenario, forget_class, ratio, requests)
    return request_splits(raw, history[:k or len(history)], per_class, None, seed, "cpu", scenario)


def rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy().tobytes()) for x in images}


# digits: 1437 training images (142 to 146 per class), 360 test images; the seeded draw is pinned so that a change
# to the order of the random chunks fails here rather than silently moving every published number.
DIGITS_TRAIN = 1437


@pytest.mark.parametrize("ratio,size,per_class", [
    (0.1, 144, [13, 22, 17, 10, 22, 18, 7, 14, 6, 15]),
    (0.25, 359, [33, 40, 31, 28, 49, 40, 43, 29, 29, 37]),
])
def test_random_split_has_the_requested_size_and_is_disjoint_from_retain(digits_raw, ratio, size, per_class):
    s = splits_after(digits_raw, "random", ratio=ratio)
    assert len(s.train) == DIGITS_TRAIN
    assert len(s.forget_train) == size == round(ratio * DIGITS_TRAIN)
    assert len(s.retain_train) == DIGITS_TRAIN - size
    assert s.forget_index[:3].tolist() == [3, 9, 14]  # the seed-0 order's first picks
    retain_index = np.setdiff1d(np.arange(DIGITS_TRAIN), s.forget_index)
    assert len(retain_index) == DIGITS_TRAIN - size  # no forgotten index repeats, none is also retained
    assert torch.equal(s.retain_train.labels, s.train.labels[torch.as_tensor(retain_index)])
    assert torch.equal(s.forget_train.labels, s.train.labels[torch.as_tensor(s.forget_index)])
    # drawn over all classes: the per-class counts of the seed-0 draw
    assert np.bincount(s.forget_train.labels.numpy(), minlength=10).tolist() == per_class
    # the whole test set measures TA, and there is no forgotten test class
    assert len(s.test_retain) == len(digits_raw.test_labels) == 360 and len(s.test_forget) == 0
    assert s.forget_class is None and s.forget_classes == []
    assert s.scenario == "random" and s.request == 1


def test_random_split_follows_the_seed(digits_raw):
    a = splits_after(digits_raw, "random", ratio=0.1, seed=0).forget_index
    b = splits_after(digits_raw, "random", ratio=0.1, seed=0).forget_index
    c = splits_after(digits_raw, "random", ratio=0.1, seed=1).forget_index
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sequential_random_requests_are_disjoint_chunks_that_accumulate(digits_raw):
    last = splits_after(digits_raw, "sequential", ratio=0.1, requests=[3])
    assert [len(p) for p in last.request_sets] == [144] * 3
    assert len(last.forget_train) == 3 * 144 and last.request == 3
    chunks = [rows(p.images) for p in last.request_sets]
    assert all(chunks[i].isdisjoint(chunks[j]) for i in range(3) for j in range(i + 1, 3))
    first = splits_after(digits_raw, "sequential", k=1, ratio=0.1, requests=[3])
    assert rows(first.forget_train.images) == chunks[0]  # request 1 is the first chunk of the same draw


def test_sequential_class_requests_accumulate_classes(digits_raw):
    second = splits_after(digits_raw, "sequential", k=2, requests=[3, 5, 7])
    assert second.forget_classes == [3, 5] and second.forget_class == 5 and second.request == 2
    assert len(second.forget_train) == 146 + 145  # every training image of classes 3 and 5
    assert set(second.forget_train.labels.tolist()) == {3, 5}
    assert len(second.retain_train) == DIGITS_TRAIN - 291
    assert set(second.retain_train.labels.tolist()) == {0, 1, 2, 4, 6, 7, 8, 9}
    assert len(second.test_forget) == 37 + 37 and set(second.test_forget.labels.tolist()) == {3, 5}
    assert [len(p) for p in second.request_sets] == [146, 145]
    assert len(second.new_forget) == 145 and set(second.new_forget.labels.tolist()) == {5}  # this request's data


def test_class_names_are_accepted_as_requests(digits_raw):
    assert [r.cls for r in requests_of(digits_raw, "sequential", 3, None, ["3", 5])] == [3, 5]


@pytest.mark.parametrize("requests,message", [([3, 10], "out of range"), ([3, 5, 3], "names a class twice"),
                                              (["three"], "is not in")])
def test_bad_class_requests_are_user_errors(digits_raw, requests, message):
    with pytest.raises(UserError, match=message):
        requests_of(digits_raw, "sequential", 3, None, requests)


def test_random_requests_that_would_forget_everything_are_refused(digits_raw):
    with pytest.raises(UserError, match="leave no training data"):
        splits_after(digits_raw, "sequential", ratio=0.4, requests=[3])
