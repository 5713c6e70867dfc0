"""Files: atomic writes, self-describing safetensors checkpoints, and no unpickling anywhere."""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import prunelora
from prunelora import storage
from prunelora.errors import UserError
from prunelora.models import build_model

SRC = Path(prunelora.__file__).resolve().parent


class Boom(Exception):
    pass


# -- atomic writes ------------------------------------------------------------------------------------------

def test_write_text_and_json_leave_only_the_target(tmp_path):
    target = tmp_path / "sub" / "results.json"
    storage.write_json(target, {"a": 1, "b": torch.tensor(2.5), "p": Path("x/y")})
    assert json.loads(target.read_text()) == {"a": 1, "b": 2.5, "p": "x/y"}


def test_json_files_are_strict_json_an_undefined_figure_is_null(tmp_path):
    """Other people's readers (JavaScript's JSON.parse, jq, Go) refuse the bare NaN / Infinity Python writes."""
    import math

    import numpy as np

    target = tmp_path / "results.json"
    storage.write_json(target, {"ua": math.nan, "rows": [{"avg_nll": math.inf, "tokens": 7, "ok": True}],
                                "pair": (np.float32(-np.inf), np.float64(0.25)), "n": np.int64(3),
                                "flag": np.bool_(False), "none": None})
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda word: pytest.fail(f"non-standard {word}")) == {
        "ua": None, "rows": [{"avg_nll": None, "tokens": 7, "ok": True}], "pair": [None, 0.25], "n": 3,
        "flag": False, "none": None}
    assert type(json.loads(text)["n"]) is int
    with pytest.raises(TypeError, match="not JSON serialisable"):
        storage.write_json(tmp_path / "other.json", {"x": object()})
    assert not (tmp_path / "other.json").exists()
    storage.write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    """mkstemp creates 0600 files; results are meant to be readable like any file the user writes."""
    mask = os.umask(0o022)
    try:
        storage.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(Boom):
        with storage.atomic_path(target, ".json") as tmp:
            tmp.write_text("half-written")
            assert tmp.parent == tmp_path and tmp != target
            raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_failed_atomic_write_creates_nothing(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(Boom):
        with storage.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = build_model("resnet18", 10, 1, 16, (0.5,), (0.25,), {"width": 2})
    path = tmp_path / "m.safetensors"
    meta = {"model": "resnet18", "model_args": {"width": 2}, "num_classes": 10, "in_channels": 1,
            "image_size": 16, "mean": [0.5], "std": [0.25]}
    storage.save_model(model, path, meta)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise Boom

    monkeypatch.setattr(storage, "save_file", broken_save)
    with pytest.raises(Boom):
        storage.save_model(model, path, meta)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_atomic_dir_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "adapter"
    with storage.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with storage.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
    assert [p.name for p in target.iterdir()] == ["b.txt"]  # replaced, not merged
    with pytest.raises(Boom):
        with storage.atomic_dir(target) as tmp:
            (tmp / "c.txt").write_text("3")
            raise Boom
    assert [p.name for p in target.iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


# -- checkpoints -----------------------------------------------------------------------------------------------

META = {"model": "vit", "model_args": {"depth": 1, "dim": 16, "heads": 2, "mlp_dim": 32}, "num_classes": 10,
        "in_channels": 1, "image_size": 16, "mean": [0.3], "std": [0.3], "dataset": "digits", "epochs": None}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("vit", 10, 1, 16, (0.3,), (0.3,), META["model_args"]).eval()
    path = tmp_path / "vit.safetensors"
    storage.save_model(model, path, META)
    return model, path


def test_checkpoint_round_trip(checkpoint):
    model, path = checkpoint
    loaded, meta = storage.load_model(path)
    assert meta == META
    assert storage.read_meta(path) == META
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.eval()(x))
    assert isinstance(prunelora.load(path), torch.nn.Module)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        storage.load_model(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "flipped_header"])
def test_corrupt_checkpoint_is_a_user_error(checkpoint, damage):
    _, path = checkpoint
    data = path.read_bytes()
    path.write_bytes({
        "garbage": os.urandom(64),
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "flipped_header": data[:8] + b"{{{{" + data[12:],
    }[damage])
    with pytest.raises(UserError, match=str(path.name)):
        storage.load_model(path)


def test_safetensors_not_written_by_prunelora_is_a_user_error(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(UserError, match="not written by prunelora"):
        storage.load_model(path)
    save_file({"weight": torch.zeros(2, 2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(UserError, match="not written by prunelora"):
        storage.load_model(path)


@pytest.mark.parametrize("meta_text,match", [
    ("{not json", "corrupt metadata"),
    (json.dumps({k: v for k, v in META.items() if k != "num_classes"}), "lacks 'num_classes'"),
    (json.dumps({**META, "model": "resnet7"}), "unknown model"),
])
def test_bad_metadata_is_a_user_error(checkpoint, tmp_path, meta_text, match):
    model, _ = checkpoint
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": storage.FORMAT, "meta": meta_text})
    with pytest.raises(UserError, match=match):
        storage.load_model(path)


def test_weights_of_another_architecture_are_a_user_error(checkpoint, tmp_path):
    model, _ = checkpoint
    path = tmp_path / "mismatch.safetensors"
    storage.save_model(model, path, {**META, "model": "resnet18", "model_args": {"width": 2}})
    with pytest.raises(UserError, match="does not match model 'resnet18'"):
        storage.load_model(path)


def test_loading_never_calls_torch_load(checkpoint, monkeypatch):
    _, path = checkpoint

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", forbidden)
    loaded, _ = storage.load_model(path)
    assert sum(p.numel() for p in loaded.parameters()) > 0


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                yield f"{func.value.id}.{func.attr}", node
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) \
                    and isinstance(func.value.value, ast.Name):
                yield f"{func.value.value.id}.{func.value.attr}.{func.attr}", node


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "missing"


@pytest.mark.slow
def test_source_never_unpickles_without_restriction():
    """torch.load only with weights_only=True, np.load only with allow_pickle=False, no pickle.load(s)."""
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems, torch_loads = [], 0
    for file in files:
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "numpy", "torch.serialization"):
                for alias in node.names:
                    if alias.name in ("load", "loads"):
                        problems.append(f"{file.name}:{node.lineno} imports {node.module}.{alias.name}")
        for name, node in _calls(tree):
            where = f"{file.relative_to(SRC)}:{node.lineno} {name}"
            if name in ("torch.load", "torch.serialization.load"):
                torch_loads += 1
                if _keyword(node, "weights_only") is not True:
                    problems.append(where + " without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load"):
                problems.append(where)
            elif name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                problems.append(where + " without allow_pickle=False")
    assert problems == []


def test_the_source_scan_catches_an_unsafe_call():
    """Control for the scan above: it reports a bare torch.load."""
    tree = ast.parse("import torch\nx = torch.load('f.pt')\ny = torch.load('g.pt', weights_only=True)\n")
    found = [(name, _keyword(node, "weights_only")) for name, node in _calls(tree)]
    assert found == [("torch.load", "missing"), ("torch.load", True)]


def test_tensors_disagreeing_with_the_metadata_are_a_user_error(tmp_path):
    """A checkpoint whose weights are not those of the architecture its metadata names must not load.

    (storage.resize_to reshapes any layer to the stored tensors, meant for channels removed by pruning; for a
    ViT whose width differs from its metadata the model then loads but its fixed position table does not
    fit, and the first forward pass fails with a RuntimeError instead of a one-line error.)
    """
    small = {"depth": 1, "dim": 16, "heads": 2, "mlp_dim": 32}
    model = build_model("vit", 10, 1, 16, (0.3,), (0.3,), small)
    path = tmp_path / "lying.safetensors"
    storage.save_model(model, path, {**META, "model_args": {**small, "dim": 32}})
    with pytest.raises(UserError):
        loaded, _ = storage.load_model(path)
        loaded(torch.rand(2, 1, 16, 16))


def test_csv_cells_are_what_other_code_parses():
    """An unmeasurable figure is an empty cell (never `nan`), a nested value strict JSON (never a Python repr)."""
    import csv
    import io
    import math

    from prunelora.storage import csv_text

    rows = [{"a": 1.5, "b": float("nan"), "c": {"x": [1, float("inf")]}, "d": None},
            {"a": 2, "e": "text, with a comma"}]
    text = csv_text(rows, ["a", "b", "c", "d", "e"])
    assert "nan" not in text.lower() and "inf" not in text.lower()
    read = list(csv.DictReader(io.StringIO(text)))
    assert read[0] == {"a": "1.5", "b": "", "c": '{"x": [1, null]}', "d": "", "e": ""}
    assert read[1]["e"] == "text, with a comma" and not math.isnan(float(read[1]["a"]))
