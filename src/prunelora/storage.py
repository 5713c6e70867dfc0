"""Files: atomic writes, safetensors checkpoints that describe their own model, PEFT adapters.

Every output is written to a temporary name in the same folder and renamed, so an interrupted
run never leaves a half-written file. Checkpoints carry the model's registry name, architecture
arguments and shapes in their safetensors metadata; loading never unpickles anything.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from . import distributed, ledger
from .errors import UserError
from .models import build_model
from .models.masked import LogitMasked

FORMAT = "prunelora/1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


SCRATCH_PREFIX = ".prunelora-rank-"


def _private(path: str | Path) -> bool:
    """Inside a scratch folder of this rank (a write nested in another): written there as usual."""
    return any(part.startswith(SCRATCH_PREFIX) for part in Path(path).parts)


@contextlib.contextmanager
def _elsewhere_unless_main(suffix: str, directory: bool):
    """On a rank other than 0 of a torchrun: a scratch path that is thrown away (only rank 0 writes)."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    try:
        target = scratch / ("d" if directory else "f" + suffix)
        if directory:
            target.mkdir()
        yield target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _rank_zero(path: str | Path, write, suffix: str, directory: bool):
    """Under torchrun only rank 0 writes (other ranks get a scratch path, thrown away), and every rank waits
    until it has (distributed.py); a write nested in a scratch folder is that rank's own."""
    target = write() if distributed.is_main() or _private(path) else _elsewhere_unless_main(suffix, directory)
    with target as tmp:
        yield tmp
    distributed.barrier()


def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds (rank 0 only)."""
    return _rank_zero(path, lambda: _atomic_path(path, suffix), suffix, directory=False)


@contextlib.contextmanager
def _atomic_path(path: str | Path, suffix: str):
    path = Path(path)
    run = ledger.active()
    if run is not None:
        run.check_target(path)  # new, or this run's own: never a user's file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        described = run.intend(path, tmp) if run is not None else None  # listed before it lands: a kill
        os.replace(tmp, path)                                             # between the two keeps it this run's
        if run is not None:
            run.record(path, described)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> Any:
    """The JSON value in a file prunelora wrote (strict JSON, UTF-8)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    """`data` as strict JSON (json_ready): what any reader parses, never a bare NaN or Infinity."""
    write_text(path, json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")


def csv_text(rows: list[dict], keys: list[str]) -> str:
    """`rows` as CSV with the columns `keys`: a missing or unmeasurable figure (None, NaN, infinite) is an empty
    cell, never the word `nan`, and a nested value (a list, a mapping) is strict JSON, never a Python repr."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        cells = {}
        for key in keys:
            value = json_ready(row.get(key))
            cells[key] = "" if value is None else json.dumps(value, allow_nan=False) \
                if isinstance(value, (dict, list)) else value
        writer.writerow(cells)
    return buffer.getvalue()


def json_ready(value: Any) -> Any:
    """`value` as strict JSON can hold it: a NaN or infinite float (a figure its data could not give) is null,
    numpy and torch scalars are plain numbers, paths are strings, tuples are lists.

    Python's json writes NaN as the bare word `NaN`, which JavaScript's JSON.parse, jq's strict readers and
    most other languages refuse; every file prunelora writes is read by other people's code.
    """
    if isinstance(value, dict):
        return {str(k) if isinstance(k, Path) else k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, (str, int, float, bool)) and value is not None and hasattr(value, "item"):
        value = value.item()  # a numpy or torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"not JSON serialisable: {type(value)}")


def atomic_dir(path: str | Path):
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds (rank 0 only)."""
    return _rank_zero(path, lambda: _atomic_dir(path), "", directory=True)


@contextlib.contextmanager
def _atomic_dir(path: str | Path):
    path = Path(path)
    run = ledger.active()
    if run is not None:
        run.check_target(path, directory=True)  # new, or a folder of this run's own files only
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with run.scratch(tmp) if run is not None else contextlib.nullcontext():
            yield tmp
        mask = _umask()  # mkdtemp makes 0700 and some writers 0600: results are ordinary files
        os.chmod(tmp, 0o777 & ~mask)
        for item in tmp.rglob("*"):
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)
        described = run.intend(path, tmp) if run is not None else None  # listed before it lands (see above)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        if run is not None:
            run.record(path, described)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_model(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> None:
    """Weights as safetensors; meta (model name, arguments, data shape) as its JSON metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "meta": json.dumps(json_ready(meta), allow_nan=False)}
    with atomic_path(path, ".safetensors") as tmp:
        save_tensors(tensors, tmp, header)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, whose failures of the operating system (a full disk) are raised as the OSError
    they are, so the command line reports them as such (safetensors wraps them in its own error)."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number), str(path)) from None


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc}); pass a file written by prunelora") from None
    if header.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by prunelora (no '{FORMAT}' metadata)")
    try:
        return json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError):
        raise UserError(f"checkpoint {path} has corrupt metadata") from None


def resize_to(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give layers whose channels were physically removed the shapes stored in the checkpoint."""
    for name, module in model.named_modules():
        weight = state.get(f"{name}.weight" if name else "weight")
        if weight is None or not hasattr(module, "weight") or module.weight is None:
            continue
        if tuple(module.weight.shape) == tuple(weight.shape):
            continue
        if isinstance(module, nn.Conv2d):
            module.out_channels, module.in_channels = weight.shape[0], weight.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = weight.shape
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.num_features = weight.shape[0]
        elif isinstance(module, nn.LayerNorm):
            module.normalized_shape = tuple(weight.shape)
        else:
            continue
        for key, _ in module.named_parameters(recurse=False):
            stored = state.get(f"{name}.{key}")
            if stored is not None:
                setattr(module, key, nn.Parameter(torch.empty_like(stored)))
        for key, _ in module.named_buffers(recurse=False):
            stored = state.get(f"{name}.{key}")
            if stored is not None:
                module._buffers[key] = torch.empty_like(stored)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, or of every file in a folder (short): which checkpoint a stage started from."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape from a safetensors header: nothing is read or allocated."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is corrupt ({exc})") from None


def _checked_meta(path: Path, meta: dict[str, Any]) -> list[int]:
    """The metadata's sizes as sane values (a tampered header must not decide an allocation); the masked classes."""
    missing = [k for k in ("num_classes", "in_channels", "image_size", "mean", "std") if k not in meta]
    if missing:
        raise UserError(f"checkpoint {path} metadata lacks '{missing[0]}'; pass a file written by prunelora")
    for key in ("num_classes", "in_channels", "image_size"):
        value = meta.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
            raise UserError(f"checkpoint {path} metadata has an invalid {key} ({value!r}); pass a file written by "
                            "prunelora")
    for key in ("mean", "std"):
        value = meta.get(key)
        if not isinstance(value, list) or not value or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            raise UserError(f"checkpoint {path} metadata has an invalid {key} ({value!r}); pass a file written by "
                            "prunelora")
    if any(v <= 0 for v in meta["std"]):
        raise UserError(f"checkpoint {path} metadata has a non-positive std ({meta['std']})")
    if not isinstance(meta.get("model_args", {}), dict):
        raise UserError(f"checkpoint {path} metadata has invalid model_args ({meta.get('model_args')!r})")
    masked = meta.get("masked_classes")
    if not masked:
        return []
    try:
        classes = [int(c) for c in (masked if isinstance(masked, list) else str(masked).split(","))]
    except (TypeError, ValueError):
        classes = None
    if classes is None or not all(0 <= c < meta["num_classes"] for c in classes) or len(set(classes)) != len(classes):
        raise UserError(f"checkpoint {path} metadata has invalid masked_classes ({masked!r}): expected distinct "
                        f"class indices below {meta['num_classes']}")
    return classes


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a registered model from a prunelora checkpoint (pruned shapes included).

    The model the metadata describes is first built on the meta device and its shapes compared with
    the file's tensors, so a tampered header (a width of 200000) is refused before any memory is allocated.
    """
    path = Path(path)
    meta = read_meta(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str):
        raise UserError(f"checkpoint {path} metadata lacks its model name; pass a file written by prunelora")
    masked = _checked_meta(path, meta)
    shapes = tensor_shapes(path)
    if masked:  # logit-mask: the model inside a wrapper that hides these classes
        shapes = {k.removeprefix("inner."): v for k, v in shapes.items()}

    def build(device: str | None) -> nn.Module:
        with torch.device(device) if device else contextlib.nullcontext():
            model = build_model(meta["model"], meta["num_classes"], meta["in_channels"], meta["image_size"],
                                tuple(meta["mean"]), tuple(meta["std"]), meta.get("model_args", {}))
        if meta.get("prune_mode") == "remove":  # channels were taken out: the tensors say the new shapes
            resize_to(model, {k: torch.empty(v, device=device or "cpu") for k, v in shapes.items()})
        return model

    try:
        skeleton = build("meta")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a tampered header makes the constructor raise
        raise UserError(f"checkpoint {path} metadata does not describe a buildable '{meta['model']}' "
                        f"({type(exc).__name__}: {exc})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != shapes:
        differ = sorted(set(expected) ^ set(shapes)) or [k for k in expected if expected[k] != shapes[k]]
        key = differ[0]
        raise UserError(f"checkpoint {path} does not match model '{meta['model']}' as its metadata describes it: "
                        f"{key} is {shapes.get(key, 'absent')} in the file, {expected.get(key, 'absent')} in the "
                        "model; pass an unmodified file written by prunelora")
    model = build(None)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"checkpoint {path} is corrupt ({exc})") from None
    if masked:
        state = {k.removeprefix("inner."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise UserError(f"checkpoint {path} does not match model '{meta['model']}': {first}") from None
    if masked:
        model = LogitMasked(model, masked)
    return model, meta


def write_jsonl(rows: list[dict], path: str | os.PathLike[str]) -> None:
    """One JSON object per line, UTF-8, written atomically (write_text: a reader never sees half a file)."""
    lines = (json.dumps(json_ready(row), ensure_ascii=False, allow_nan=False) + "\n" for row in rows)
    write_text(path, "".join(lines))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
