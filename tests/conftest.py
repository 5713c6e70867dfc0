"""Shared fixtures: tiny digits splits, a fake CIFAR-10 root, one smoke `reproduce` run reused by several modules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .causal_lm_fixtures import people, tokenizer, user_model  # noqa: F401 (the causal-LM tests' fixtures)
from .helpers import write_fake_cifar

# The README's and the docs' command tests share one workspace (later pages use what earlier ones wrote).
DOC_COMMAND_FILE = "test_docs.py"


def pytest_configure(config):
    _bind_transformers_logging()
    _pin_worker_to_its_cores()


def _bind_transformers_logging() -> None:
    """transformers' log handler keeps the stderr of its first use: were that a test's captured stream (capsys),
    which closes with the test, a later test's warning would print a logging traceback into its stderr."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # the hf extra is not installed
        return
    hf_logging.get_logger()


def _pin_worker_to_its_cores() -> None:
    """Under pytest-xdist (`-n N`, pyproject's default), each worker gets its own share of the cores.

    Two workers each taking every core's threads oversubscribe them (10-20x slower on 2 cores): each worker is
    pinned to its share instead, so torch, `--threads`' default (the affinity mask) and the processes a test starts
    all see that share.
    """
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    share = cores[int(worker.removeprefix("gw")) % count::count] or cores
    os.sched_setaffinity(0, share)
    os.environ["OMP_NUM_THREADS"] = str(len(share))
    import torch

    torch.set_num_threads(len(share))


def pytest_collection_modifyitems(config, items):
    """The README's and the docs' command tests first: the longest chain of one file (one worker under
    `--dist loadfile`), so the other files fill the other workers around it rather than after it."""
    items.sort(key=lambda item: item.path.name != DOC_COMMAND_FILE)  # stable: each file keeps its order


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
