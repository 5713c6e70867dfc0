"""Helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import math
import pickle
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# The official CIFAR-10 python folder, where CI and the dev machine keep it (read-only); tests skip without it.
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-py"

FAKE_LAYOUT = {
    # name: (folder, train files, test file, meta file, label key, names key, classes)
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                "batches.meta", b"labels", b"label_names", 10),
    "cifar100": ("cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names", 100),
}


def _pickle(path: Path, obj, protocol: int = 2) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)


def write_fake_cifar(root: Path, name: str = "cifar10", per_class: int = 2, seed: int = 0,
                     skip: tuple[str, ...] = ()) -> dict:
    """A folder in the official python layout with random images: per_class images of each class per file.

    Returns what was written, file name -> (data (N, 3072) uint8, labels list), plus 'names' and 'folder'.
    Files named in `skip` are not written.
    """
    folder_name, train_files, test_file, meta_file, label_key, names_key, classes = FAKE_LAYOUT[name]
    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: dict = {"folder": folder}
    for file in (*train_files, test_file):
        labels = rng.permutation(np.repeat(np.arange(classes), per_class)).tolist()
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        written[file] = (data, labels)
        if file not in skip:
            _pickle(folder / file, {b"batch_label": b"fake", label_key: labels, b"data": data})
    names = [f"class{i}".encode() for i in range(classes)]
    written["names"] = [n.decode() for n in names]
    if meta_file not in skip:
        _pickle(folder / meta_file, {names_key: names, b"num_cases_per_batch": per_class * classes})
    return written


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """prunelora.cli.main in process; returns (exit code, stdout, stderr)."""
    from prunelora.cli import main

    capsys.readouterr()  # drop anything printed before
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def smoke_config(**unlearn):
    """The smoke preset's config with unlearning overrides (e.g. prune_amount=0.5, keep_sparsity=True)."""
    from prunelora.config import resolve

    return resolve(preset="smoke", overrides={"unlearn": dict(unlearn)} if unlearn else None)


def copy_of(run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run folder (session fixtures must not be written into)."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def same(a, b) -> bool:
    """Equality of JSON values where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@contextmanager
def within(seconds: int):
    """Fail (rather than hang the suite) where the code under test blocks, as opening a FIFO without a writer does."""
    def expired(*_):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
