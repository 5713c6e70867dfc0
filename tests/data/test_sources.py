"""Where images come from: the restricted unpickler, CIFAR folders, archives, downloads, offline errors."""
from __future__ import annotations

import builtins
import dataclasses
import io
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from prunelora.data import class_splits, load_dataset, sources
from prunelora.data.sources import CIFAR, RestrictedUnpickler, extract_archive, load_cifar, md5sum, restricted_load
from prunelora.errors import UserError

from ..helpers import SHARED_CIFAR10, write_fake_cifar


class SystemPayload:
    """Unpickling it calls os.system(cmd) (pickled as posix.system)."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class EvalPayload:
    """Unpickling it calls builtins.eval(code)."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def touch_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


# -- the restricted unpickler ------------------------------------------------------------------------

def test_eval_payload_is_live_with_the_plain_unpickler(tmp_path):
    """Control: the payload used below really does run under pickle.loads, so its refusal means something."""
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(EvalPayload(touch_code(marker)), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("make", ["system", "eval", "eval_inside_a_cifar_dict"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_restricted_unpickler_refuses_code_execution(tmp_path, make, protocol):
    marker = tmp_path / "pwned"
    if make == "system":
        payload = SystemPayload(f"touch {marker}")
    elif make == "eval":
        payload = EvalPayload(touch_code(marker))
    else:
        payload = {b"data": np.zeros((2, 3072), np.uint8), b"labels": EvalPayload(touch_code(marker))}
    blob = pickle.dumps(payload, protocol=protocol)
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)

    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    with pytest.raises(UserError, match="cannot read dataset file"):
        restricted_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_restricted_load_reads_a_legit_numpy_pickle(tmp_path, protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    path = tmp_path / "batch"
    with open(path, "wb") as handle:
        pickle.dump({b"data": data, b"labels": [1, 7], b"batch_label": b"x"}, handle,
                    protocol=protocol)
    loaded = restricted_load(path)
    assert loaded[b"labels"] == [1, 7] and loaded[b"batch_label"] == b"x"
    assert loaded[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(loaded[b"data"], data)


def _legit_blob() -> bytes:
    return pickle.dumps({b"data": np.arange(30, dtype=np.uint8).reshape(3, 10), b"labels": [1, 2, 3]}, protocol=2)


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "bad_codec", "huge_length"])
def test_corrupt_dataset_pickle_is_a_user_error(tmp_path, case):
    """Any damaged batch file must become a one-line UserError, never an arbitrary exception (traceback)."""
    blob = _legit_blob()
    content = {
        "empty": b"",
        "truncated": blob[: len(blob) // 2],
        "text": b"this is not a pickle\n",
        # The numpy array's bytes are stored as _codecs.encode(str, 'latin1'): a damaged codec name
        # makes the (allowed) _codecs.encode raise LookupError.
        "bad_codec": blob.replace(b"latin1", b"latij1"),
        # BINBYTES8 with an absurd length: the unpickler raises OverflowError.
        "huge_length": b"\x8eS\xae~\xe6\xe6\x825\x96\xab",
    }[case]
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(UserError, match="data_batch_1"):
        restricted_load(path)


@pytest.mark.skipif(not (SHARED_CIFAR10 / "test_batch").is_file(), reason="official CIFAR-10 folder not present")
def test_restricted_load_reads_the_official_cifar10_files():
    batch = restricted_load(SHARED_CIFAR10 / "test_batch")
    assert batch[b"data"].shape == (10000, 3072) and batch[b"data"].dtype == np.uint8
    assert sorted(set(batch[b"labels"])) == list(range(10))
    meta = restricted_load(SHARED_CIFAR10 / "batches.meta")
    assert [n.decode() for n in meta[b"label_names"]][:3] == ["airplane", "automobile", "bird"]


# -- CIFAR folders -------------------------------------------------------------------------------------

@pytest.mark.parametrize("root_is_folder", [False, True])
def test_fake_cifar10_folder_loads_with_shapes_labels_and_pixels(tmp_path, root_is_folder):
    written = write_fake_cifar(tmp_path, "cifar10", per_class=2)
    root = written["folder"] if root_is_folder else tmp_path
    raw = load_cifar("cifar10", root, allow_download=False)
    assert raw.train_images.shape == (100, 3, 32, 32) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (20, 3, 32, 32)
    assert raw.shape == (3, 32, 32) and raw.num_classes == 10
    assert raw.class_names == written["names"]
    expected_labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert raw.train_labels.tolist() == expected_labels and raw.train_labels.dtype == np.int64
    assert raw.test_labels.tolist() == written["test_batch"][1]
    # row-major (3, 32, 32): the first 1024 bytes are the red plane
    data5 = written["data_batch_5"][0]
    np.testing.assert_array_equal(raw.train_images[80 + 3], data5[3].reshape(3, 32, 32))
    np.testing.assert_array_equal(raw.train_images[80 + 3, 0, 0, :5], data5[3, :5])
    assert raw.mean == sources.CIFAR_STATS["cifar10"][0]


def test_fake_cifar100_folder_loads_fine_labels(tmp_path):
    written = write_fake_cifar(tmp_path, "cifar100", per_class=1)
    raw = load_dataset("cifar100", str(tmp_path), allow_download=False)
    assert raw.num_classes == 100 and raw.train_images.shape == (100, 3, 32, 32)
    assert raw.train_labels.tolist() == written["train"][1]
    assert raw.test_labels.tolist() == written["test"][1]


def test_fake_cifar10_through_load_dataset_and_class_splits(fake_cifar10_root):
    raw = load_dataset("cifar10", str(fake_cifar10_root), allow_download=False)
    s = class_splits(raw, 9, train_per_class=4, test_per_class=1, seed=0)
    assert s.forget_train.labels.tolist() == [9] * 4
    assert len(s.retain_train) == 36 and 9 not in s.retain_train.labels.tolist()
    assert s.image_shape == (3, 32, 32)


def test_missing_batch_file_is_a_user_error_naming_it(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", skip=("data_batch_3",))
    with pytest.raises(UserError, match="data_batch_3"):
        load_cifar("cifar10", tmp_path, allow_download=False)


def test_missing_meta_file_is_a_user_error_naming_it(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", skip=("batches.meta",))
    with pytest.raises(UserError, match="batches.meta"):
        load_cifar("cifar10", tmp_path, allow_download=False)


def test_batch_with_wrong_shape_is_a_user_error(tmp_path):
    written = write_fake_cifar(tmp_path, "cifar10")
    path = written["folder"] / "data_batch_2"
    with open(path, "wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}, handle, protocol=2)
    with pytest.raises(UserError, match=r"data_batch_2 holds data of shape \(4, 100\)"):
        load_cifar("cifar10", tmp_path, allow_download=False)


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


# -- archives --------------------------------------------------------------------------------------------

def make_archive(tmp_path: Path, extra: dict[str, bytes] | None = None, skip: tuple[str, ...] = ()) -> Path:
    """cifar-10-python.tar.gz with the official layout (fake content), plus any extra members."""
    src = tmp_path / "archive_src"
    written = write_fake_cifar(src, "cifar10", per_class=1, skip=skip)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for file in sorted(written["folder"].iterdir()):
            tar.add(file, arcname=f"cifar-10-batches-py/{file.name}")
        for name, content in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return archive


def test_extract_archive_with_matching_md5(tmp_path):
    archive = make_archive(tmp_path)
    spec = dataclasses.replace(CIFAR["cifar10"], md5=md5sum(archive))
    root = tmp_path / "root"
    root.mkdir()
    folder = extract_archive(archive, spec, root)
    assert folder == root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*spec.train_files, spec.test_file, spec.meta_file])
    assert [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]  # no staging folder left
    assert load_cifar("cifar10", root, allow_download=False).train_images.shape == (50, 3, 32, 32)


def test_extract_archive_ignores_members_outside_the_expected_files(tmp_path):
    archive = make_archive(tmp_path, extra={"../escaped.txt": b"x", "cifar-10-batches-py/../../escaped2.txt": b"x",
                                            "cifar-10-batches-py/extra.sh": b"x"})
    spec = dataclasses.replace(CIFAR["cifar10"], md5=md5sum(archive))
    root = tmp_path / "deep" / "root"
    root.mkdir(parents=True)
    folder = extract_archive(archive, spec, root)
    assert not (folder / "extra.sh").exists()
    assert not list(tmp_path.rglob("escaped*"))


def test_extract_archive_checksum_mismatch_is_a_user_error_and_extracts_nothing(tmp_path):
    archive = make_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UserError, match="checksum mismatch"):
        extract_archive(archive, CIFAR["cifar10"], root)  # the official md5 cannot match the fake archive
    assert list(root.iterdir()) == []


def test_extract_archive_lacking_a_member_is_a_user_error_and_leaves_nothing(tmp_path):
    archive = make_archive(tmp_path, skip=("test_batch",))
    spec = dataclasses.replace(CIFAR["cifar10"], md5=md5sum(archive))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UserError, match="lacks"):
        extract_archive(archive, spec, root)
    assert list(root.iterdir()) == []


def test_archive_in_the_data_root_is_extracted_on_load(tmp_path, monkeypatch):
    archive = make_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    os.replace(archive, root / archive.name)
    monkeypatch.setitem(CIFAR, "cifar10", dataclasses.replace(CIFAR["cifar10"], md5=md5sum(root / archive.name)))
    raw = load_dataset("cifar10", str(root), allow_download=False)
    assert raw.train_images.shape == (50, 3, 32, 32)
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


# -- offline, missing data, downloads ----------------------------------------------------------------------

def _no_network(monkeypatch) -> list[str]:
    calls: list[str] = []

    def refuse(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(sources.urllib.request, "urlopen", refuse)
    return calls


def test_missing_data_root_is_a_user_error_naming_it(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    missing = tmp_path / "nonexistent"
    with pytest.raises(UserError, match=str(missing)):
        load_dataset("cifar10", str(missing), allow_download=True)
    assert not missing.exists() and calls == []


def test_no_download_allowed_names_the_expected_folder(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    with pytest.raises(UserError, match=str(tmp_path / "cifar-10-batches-py")):
        load_dataset("cifar10", str(tmp_path), allow_download=False)
    assert list(tmp_path.iterdir()) == [] and calls == []


def test_failed_download_is_a_user_error_and_writes_nothing(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    with pytest.raises(UserError, match="download from .* failed") as info:
        load_dataset("cifar10", str(tmp_path), allow_download=True)
    assert "cifar-10-batches-py" in str(info.value)
    assert calls == [CIFAR["cifar10"].url]
    assert list(tmp_path.iterdir()) == []


def test_failed_download_into_the_default_root_does_not_create_it(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    default_root = tmp_path / "cache" / "data"
    monkeypatch.setenv("PRUNELORA_DATA", str(default_root))
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset("cifar10", None, allow_download=True)
    assert len(calls) == 1
    assert not (tmp_path / "cache").exists()


class _Response(io.BytesIO):
    pass


def test_successful_download_is_verified_and_extracted(tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "server")
    payload = archive.read_bytes()
    monkeypatch.setitem(CIFAR, "cifar10", dataclasses.replace(CIFAR["cifar10"], md5=md5sum(archive)))
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout=None: _Response(payload))
    root = tmp_path / "root"
    root.mkdir()
    raw = load_dataset("cifar10", str(root), allow_download=True)
    assert raw.train_images.shape == (50, 3, 32, 32)
    names = sorted(p.name for p in root.iterdir())
    assert names == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no .part file, no staging folder


def test_download_with_a_wrong_checksum_is_a_user_error(tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "server")
    payload = archive.read_bytes()
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout=None: _Response(payload))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UserError, match="checksum mismatch"):
        load_dataset("cifar10", str(root), allow_download=True)
    assert not (root / "cifar-10-batches-py").exists()
