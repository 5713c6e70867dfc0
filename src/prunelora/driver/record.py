"""A record per delivered model: what was asked, what was done, what it showed, and hashes that prove it.

An auditor who receives a model later must be able to check that it is the model that was tested,
on the data the request named. So beside every delivered model the driver writes a record
(`record.json` in a delivered folder, `<model>.record.json` beside a delivered file) holding the
request (its ids or classes and a content hash of the forgotten samples' bytes), the model before
(a hash of its weights) and after (hashes of the delivered weight files), the method and the fully
resolved configuration, versions and machine, the evidence with its Retrain-free verdict, the cost,
and in a sequence the hash of the previous request's record (a chain). `prunelora verify` (verify.py)
recomputes every hash and the evidence from the paths the record holds.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import storage
from ..config import RunConfig, to_dict
from ..data import ImageSet, Splits
from ..ledger import file_hash
from ..machine import facts
from ..metrics.standalone import standalone_verdict, thresholds

FORMAT = "prunelora-record/1"
HASH_BATCH = 1024


def record_path(deliverable: Path) -> Path:
    """record.json inside a delivered folder, <stem>.record.json beside a delivered file."""
    folder = deliverable.is_dir() if deliverable.exists() else deliverable.suffix == ""
    return deliverable / "record.json" if folder else deliverable.with_suffix(".record.json")


def weight_files(deliverable: Path) -> list[Path]:
    """The files that hold a deliverable's weights: the file itself, or a folder's model/ or model.safetensors."""
    if deliverable.is_file():
        return [deliverable]
    for inner in (deliverable / "model", deliverable / "model.safetensors"):
        if inner.is_dir():
            return sorted(p for p in inner.rglob("*") if p.is_file())
        if inner.is_file():
            return [inner]
    return []


def weight_hashes(deliverable: Path) -> dict[str, str]:
    """sha256 of every weight file, by its path relative to the deliverable's folder."""
    base = deliverable.parent if deliverable.is_file() else deliverable
    return {str(f.relative_to(base)): file_hash(f) for f in weight_files(deliverable)}


def weights_digest(model: nn.Module) -> str:
    """sha256 over a model's state (names, dtypes, shapes, bytes, in name order): the model before unlearning."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def data_digest(data: ImageSet) -> str:
    """sha256 over a set's image bytes and labels, in order (streamed sets are read a batch at a time)."""
    digest = hashlib.sha256()
    labels = data.labels.cpu().numpy().astype(np.int64)
    for start in range(0, len(data), HASH_BATCH):
        batch = data.images[start:start + HASH_BATCH]
        batch = batch.detach().cpu().contiguous() if isinstance(batch, torch.Tensor) else torch.as_tensor(batch)
        digest.update(f"{batch.dtype}|{tuple(batch.shape[1:])}|".encode())
        digest.update(batch.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(labels.tobytes())
    return digest.hexdigest()


def request_of(splits: Splits, request: int) -> dict[str, Any]:
    """What the request forgot: its ids (named samples) or classes, how many samples, and their content hash."""
    forget = splits.new_forget
    ids = getattr(splits, "request_ids", None)
    named = list(ids[request - 1]) if ids and len(ids) >= request else getattr(splits, "forget_ids", None)
    return {"scenario": splits.scenario, "request": request, "classes": list(splits.forget_classes) or None,
            "ids": list(named) if named is not None else None, "samples": len(forget),
            "forget_sha256": data_digest(forget), "all_forgotten_sha256": data_digest(splits.forget_train)}


def evidence_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """The row's measured figures (finite numbers, flags and words; a NaN is written as None)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
    return out


def portable_config(config: RunConfig) -> dict[str, Any]:
    """The resolved configuration, with the data's and the request files' paths made absolute (verify runs
    from anywhere)."""
    saved = to_dict(config)
    data = saved["data"]
    if data.get("dataset") and Path(data["dataset"]).exists():
        data["dataset"] = str(Path(data["dataset"]).resolve())
    if data.get("data_root"):
        data["data_root"] = str(Path(data["data_root"]).expanduser().resolve())
    if data.get("forget"):
        data["forget"] = [str(Path(p).resolve()) for p in data["forget"]]
    return saved


def stage_facts(config: RunConfig, device: torch.device, splits: Splits, request: int,
                start: nn.Module) -> dict[str, Any]:
    """What every budget's record of one stage shares (the request with its data hashes, the model before, the
    configuration, the machine): computed once per stage, not per budget."""
    return {"request": request_of(splits, request), "model_before": {"weights_sha256": weights_digest(start)},
            "config": portable_config(config), "environment": facts(device)}


def write_record(deliverable: Path, shared: dict[str, Any], *, model: str, loader: dict[str, Any], method: str,
                 epochs: int | None, seed: int, metrics: dict[str, Any], cost: dict[str, Any],
                 previous: Path | None) -> Path:
    """Write the deliverable's record (atomically) beside it and return its path. shared: stage_facts."""
    path = record_path(deliverable)
    verdict, reasons = standalone_verdict(metrics)
    record = {
        "format": FORMAT, "model": model, "method": method, "epochs": epochs, "seed": seed,
        "request": shared["request"], "model_before": shared["model_before"],
        "model_after": {"path": os.path.relpath(deliverable, path.parent), **loader,
                        "weight_files": weight_hashes(deliverable)},
        "config": shared["config"], "environment": shared["environment"],
        "evidence": evidence_of(metrics),
        "verdict": {"standalone": verdict, "reasons": reasons, "thresholds": thresholds()},
        "cost": cost,
        "previous_record": ({"path": os.path.relpath(previous, path.parent), "sha256": file_hash(previous)}
                            if previous is not None and previous.is_file() else None),
    }
    storage.write_json(path, record)
    return path
