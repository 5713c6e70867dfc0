"""`prunelora verify RECORD`: is the delivered model the one tested, on the data the request named?

An auditor holds a record (driver/record.py) and nothing else of the run. This reads the delivered
model and the named data from the paths the record holds (or --model / --dataset / --data-root),
recomputes every hash (the weight files, the forgotten samples' bytes, the previous record of a
sequence), measures the model again and compares each figure the outputs give, and the verdict, with
the record. Exit 0 when everything matches, 1 when anything differs (each difference said), 2 for
bad input. Evidence that needs the model's training history (the probe, relearn time from the
original) is listed as not re-run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import storage
from .api import as_classifier
from .config import RunConfig
from .config.parsing import build
from .data import to_float
from .driver import Experiment, select_device
from .driver.record import FORMAT, request_of, weight_hashes
from .errors import UserError
from .ledger import file_hash
from .metrics.evaluate import collect_logits, metrics_from_logits
from .metrics.standalone import standalone_verdict
from .models.outputs import unwrap
from .models.user_models import load_factory, load_hf
from .verify_causal_lm import FORMAT as LM_FORMAT
from .verify_causal_lm import verify_lm

DEFAULT_TOLERANCE = 1e-3  # in each figure's own unit: measured again on another machine, floats may move


def read_record(path: Path) -> dict[str, Any]:
    """The record at `path` (a record file, or a delivered folder holding record.json)."""
    if path.is_dir():
        path = path / "record.json"
    if not path.is_file():
        raise UserError(f"{path}: no such record (give the record.json a run wrote beside its delivered model)")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not JSON: give a record.json written by prunelora") from None
    if not isinstance(record, dict) or record.get("format") not in (FORMAT, LM_FORMAT):
        raise UserError(f"{path} is not a prunelora record (format {FORMAT}): give the record.json a run wrote")
    return record


def load_delivered(record: dict[str, Any], path: Path) -> nn.Module:
    """The delivered model at `path`, loaded the way its kind is loaded (model_after.kind)."""
    kind = record["model_after"].get("kind")
    if kind == "prunelora":
        return storage.load_model(path)[0]
    if kind == "hf":
        return load_hf(str(path / "model"), progress=False).model
    if kind == "py":
        return load_factory(record["model_after"]["source"], str(path / "model.safetensors")).model
    raise UserError(f"the record names a model of unknown kind {kind!r}")


def run_config(record: dict[str, Any], dataset: str | None, data_root: str | None) -> RunConfig:
    """The run's configuration as recorded, pointed at the data given on the command line."""
    saved = json.loads(json.dumps(record["config"]))
    if dataset is not None:
        saved["data"]["dataset"] = dataset
    if data_root is not None:
        saved["data"]["data_root"] = data_root
    saved["data"]["download"] = False  # verify reads what is there; it never fetches
    saved["out"] = None
    saved["device"] = "auto"
    try:
        return build(RunConfig, saved)
    except (TypeError, KeyError) as exc:
        raise UserError(f"the record's configuration cannot be read by this prunelora ({exc})") from None


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(v, (int, float)) for v in (a, b)):
        return a == b
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= tolerance


def verify(record_file: str, model: str | None = None, dataset: str | None = None, data_root: str | None = None,
           tolerance: float = DEFAULT_TOLERANCE, say=print) -> bool:
    """Every check of the record at `record_file`, each said in one line; True when all match."""
    path = Path(record_file)
    record = read_record(path)
    folder = path if path.is_dir() else path.parent
    differences: list[str] = []

    def check(ok: bool, what: str, detail: str) -> None:
        say(f"{'ok' if ok else 'DIFFERS'}: {what}: {detail}")
        if not ok:
            differences.append(what)

    if record["format"] == LM_FORMAT:  # a causal LM's record (--task causal-lm)
        verify_lm(record, folder, model, dataset, tolerance, check)
        return _conclude(differences, say)
    delivered = Path(model) if model else folder / record["model_after"]["path"]

    if not delivered.exists():
        raise UserError(f"{delivered}: the delivered model is not there (give --model PATH)")
    recorded_files = record["model_after"].get("weight_files") or {}
    found = weight_hashes(delivered)
    changed = sorted(k for k in set(recorded_files) | set(found) if recorded_files.get(k) != found.get(k))
    check(not changed, "model", f"{len(found)} weight file(s) of {delivered} "
          + ("have the recorded sha256" if not changed else f"differ from the record: {', '.join(changed[:3])}"))

    config = run_config(record, dataset, data_root)
    device = select_device("auto")
    exp = Experiment(config, device, progress=False, registry_models=False, unlearns=False)
    seed, request = int(record["seed"]), int(record["request"]["request"])
    splits = exp.splits(seed, request)
    now = request_of(splits, request)
    then = record["request"]
    same_ids = now.get("ids") == then.get("ids")
    ids_note = "" if same_ids or then.get("ids") is None else \
        f" ({len(set(map(str, then['ids'])) ^ set(map(str, now.get('ids') or [])))} id(s) differ)"
    check(now["forget_sha256"] == then["forget_sha256"] and same_ids, "data",
          f"{now['samples']} forgotten samples of {config.data.dataset} "
          + ("have the recorded sha256" if now["forget_sha256"] == then["forget_sha256"] and same_ids
             else f"differ from the recorded {then['samples']}{ids_note}"))

    previous = record.get("previous_record")
    if previous:
        earlier = folder / previous["path"]
        ok = earlier.is_file() and file_hash(earlier) == previous["sha256"]
        check(ok, "chain", f"the previous request's record {earlier} "
              + ("has the recorded sha256" if ok else "is missing or changed"))

    loaded = load_delivered(record, delivered).to(device)
    example = to_float(splits.retain_train.images[:2]).to(device)
    kind = record["model_after"].get("kind")
    evaluated = loaded if kind == "prunelora" else as_classifier(
        unwrap(loaded), example, record["model_after"].get("mean"), record["model_after"].get("std"))[0]
    with torch.inference_mode():
        logits, labels = collect_logits(evaluated, splits, config.eval_batch_size)
    measured = metrics_from_logits(logits, labels, seed, config.mia_max_per_side, config.evidence)
    recorded = record["evidence"]
    compared = [k for k in measured if k in recorded and recorded[k] is not None]
    moved = [f"{k} {measured[k]} vs {recorded[k]}" for k in compared if not _close(measured[k], recorded[k], tolerance)]
    skipped = sorted(k for k in recorded if k not in measured and recorded[k] is not None)
    check(not moved, "evidence", f"{len(compared)} figures measured again "
          + (f"agree with the record within {tolerance:g}" if not moved else f"differ: {'; '.join(moved[:4])}")
          + (f" (not re-run, they need the run's training: {', '.join(skipped[:6])}"
             f"{', ...' if len(skipped) > 6 else ''})" if skipped else ""))
    verdict, _ = standalone_verdict({**recorded, **measured})
    then_verdict = record["verdict"]["standalone"]
    check(verdict == then_verdict, "verdict", f"{verdict!r}" + ("" if verdict == then_verdict
                                                               else f" now, {then_verdict!r} in the record"))
    return _conclude(differences, say)


def _conclude(differences: list[str], say) -> bool:
    say("verified: the delivered model is the one tested, on the data the request named" if not differences
        else f"NOT verified: {', '.join(differences)} differ from the record")
    return not differences


__all__ = ["DEFAULT_TOLERANCE", "read_record", "verify"]
