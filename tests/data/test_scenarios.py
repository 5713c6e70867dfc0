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


@pytest.mark.parametrize("ratio", [0.1, 0.25])
def test_random_split_has_the_requested_size_and_is_disjoint_from_retain(digits_raw, ratio):
    s = splits_after(digits_raw, "random", ratio=ratio)
    n = len(s.train)
    assert len(s.forget_train) == round(ratio * n)
    assert len(s.forget_train) + len(s.retain_train) == n
    assert set(s.forget_index.tolist()).isdisjoint(set(range(n)) - set(s.forget_index.tolist())) is True
    retain_index = np.setdiff1d(np.arange(n), s.forget_index)
    assert torch.equal(s.retain_train.labels, s.train.labels[torch.as_tensor(retain_index)])
    assert len(np.unique(s.forget_index)) == len(s.forget_index)
    # over all classes, the whole test set measures TA, and there is no forgotten test class
    assert len(set(s.forget_train.labels.tolist())) == digits_raw.num_classes
    assert len(s.test_retain) == len(digits_raw.test_labels) and len(s.test_forget) == 0
    assert s.forget_class is None and s.forget_classes == []


def test_random_split_follows_the_seed(digits_raw):
    a = splits_after(digits_raw, "random", ratio=0.1, seed=0).forget_index
    b = splits_after(digits_raw, "random", ratio=0.1, seed=0).forget_index
    c = splits_after(digits_raw, "random", ratio=0.1, seed=1).forget_index
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sequential_random_requests_are_disjoint_chunks_that_accumulate(digits_raw):
    last = splits_after(digits_raw, "sequential", ratio=0.1, requests=[3])
    share = round(0.1 * len(last.train))
    assert [len(p) for p in last.request_sets] == [share] * 3
    assert len(last.forget_train) == 3 * share
    chunks = [rows(p.images) for p in last.request_sets]
    assert all(chunks[i].isdisjoint(chunks[j]) for i in range(3) for j in range(i + 1, 3))
    first = splits_after(digits_raw, "sequential", k=1, ratio=0.1, requests=[3])
    assert rows(first.forget_train.images) == chunks[0]  # request 1 is the first chunk of the same draw


def test_sequential_class_requests_accumulate_classes(digits_raw):
    second = splits_after(digits_raw, "sequential", k=2, requests=[3, 5, 7])
    assert second.forget_classes == [3, 5] and second.forget_class == 5 and second.request == 2
    assert set(second.forget_train.labels.tolist()) == {3, 5}
    assert not {3, 5} & set(second.retain_train.labels.tolist())
    assert set(second.test_forget.labels.tolist()) == {3, 5}
    assert set(second.new_forget.labels.tolist()) == {5}  # what the objective sees: this request's data


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
