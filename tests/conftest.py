"""Shared fixtures: tiny digits splits, a fake CIFAR-10 root, one smoke `reproduce` run reused by several modules."""
from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import write_fake_cifar


@pytest.fixture(scope="session")
def digits_raw():
    from prunelora.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_splits(digits_raw):
    """Forget class 3, 20 training and 10 test images per class, seed 0, on the CPU."""
    from prunelora.data import class_splits

    return class_splits(digits_raw, 3, train_per_class=20, test_per_class=10, seed=0)


@pytest.fixture(scope="session")
def fake_cifar10_root(tmp_path_factory) -> Path:
    """A data root holding a small fake cifar-10-batches-py folder (2 images per class per file)."""
    root = tmp_path_factory.mktemp("fake_cifar_root")
    write_fake_cifar(root, "cifar10", per_class=2)
    return root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """`prunelora reproduce --preset smoke` (both models, every method), run once per session.

    Tests must not modify this folder; copy it to tmp_path first (shutil.copytree) to rerun into it.
    """
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("smoke") / "run"
    rc = main(["reproduce", "--preset", "smoke", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out
