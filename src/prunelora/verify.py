"""`prunelora verify RECORD`: is the delivered model the one tested, on the data the request named?

An auditor holds a record (driver/record.py) and nothing else of the run. This reads the delivered model and
the named data from the paths the record holds (or --model / --dataset / --data-root), recomputes every hash
(the weight files, the forgotten samples, the previous record of a sequence), measures the model again through
its task (the image task's outputs, the causal-LM task's measures) and compares each figure, and the verdict,
with the record. Both tasks' records have one schema and are checked by this one path. Exit 0 when everything
matches, 1 when anything differs (each difference said), 2 for bad input. Evidence that needs the model's
training history (the probe, relearn time from the original) is listed as not re-run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .driver import remeasure
from .driver.record import FORMAT, weight_hashes
from .errors import UserError
from .ledger import file_hash
from .registry import CAUSAL_LM, IMAGE

DEFAULT_TOLERANCE = 1e-3  # in each figure's own unit: measured again on another machine, floats may move
EARLIER_FORMATS = ("prunelora-lm-record/1",)  # written by an earlier prunelora: not read (rerun the run)
TASKS = {IMAGE: remeasure.image, CAUSAL_LM: remeasure.causal_lm}  # who measures a record's model again


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
    if isinstance(record, dict) and record.get("format") in EARLIER_FORMATS:
        raise UserError(f"{path} was written by an earlier prunelora (format {record['format']}), whose language-"
                        f"model records this version does not read: rerun the command to write a {FORMAT} record")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"{path} is not a prunelora record (format {FORMAT}): give the record.json a run wrote")
    return record


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
    task = TASKS.get(record.get("task", IMAGE))
    if task is None:
        raise UserError(f"{path} names an unknown task {record.get('task')!r}")
    differences: list[str] = []

    def check(ok: bool, what: str, detail: str) -> None:
        say(f"{'ok' if ok else 'DIFFERS'}: {what}: {detail}")
        if not ok:
            differences.append(what)

    delivered = Path(model) if model else folder / record["model_after"]["path"]
    if not delivered.exists():
        raise UserError(f"{delivered}: the delivered model is not there (give --model PATH)")
    recorded_files = record["model_after"].get("weight_files") or {}
    found = weight_hashes(delivered)
    changed = sorted(k for k in set(recorded_files) | set(found) if recorded_files.get(k) != found.get(k))
    check(not changed, "model", f"{len(found)} weight file(s) of {delivered} "
          + ("have the recorded sha256" if not changed else f"differ from the record: {', '.join(changed[:3])}"))

    now, measured, (verdict, _) = task(record, delivered, dataset, data_root)
    then = record["request"]
    same_ids = [str(i) for i in now.get("ids") or []] == [str(i) for i in then.get("ids") or []] \
        if then.get("ids") is not None else True
    same = now["forget_sha256"] == then["forget_sha256"] and same_ids
    ids_note = "" if same_ids or then.get("ids") is None else \
        f" ({len(set(map(str, then['ids'])) ^ set(map(str, now.get('ids') or [])))} id(s) differ)"
    source = (record.get("data") or {}).get("train") or record["config"]["data"].get("dataset")
    check(same, "data", f"{now['samples']} forgotten samples of {dataset or source} "
          + ("have the recorded sha256" if same else f"differ from the recorded {then['samples']}{ids_note}"))

    previous = record.get("previous_record")
    if previous:
        earlier = folder / previous["path"]
        ok = earlier.is_file() and file_hash(earlier) == previous["sha256"]
        check(ok, "chain", f"the previous request's record {earlier} "
              + ("has the recorded sha256" if ok else "is missing or changed"))

    recorded = record["evidence"]
    compared = [k for k in measured if k in recorded and recorded[k] is not None]
    moved = [f"{k} {measured[k]:.6g} vs {recorded[k]:.6g}" if isinstance(measured[k], float) else
             f"{k} {measured[k]} vs {recorded[k]}" for k in compared if not _close(measured[k], recorded[k], tolerance)]
    skipped = sorted(k for k in recorded if k not in measured and recorded[k] is not None)
    check(not moved, "evidence", f"{len(compared)} figures measured again "
          + (f"agree with the record within {tolerance:g}" if not moved else f"differ: {'; '.join(moved[:4])}")
          + (f" (not re-run, they need the run's training: {', '.join(skipped[:6])}"
             f"{', ...' if len(skipped) > 6 else ''})" if skipped else ""))
    then_verdict = record["verdict"]["standalone"]
    check(verdict == then_verdict, "verdict", f"{verdict!r}" + ("" if verdict == then_verdict
                                                               else f" now, {then_verdict!r} in the record"))
    return _conclude(differences, say)


def _conclude(differences: list[str], say) -> bool:
    say("verified: the delivered model is the one tested, on the data the request named" if not differences
        else f"NOT verified: {', '.join(differences)} differ from the record")
    return not differences


__all__ = ["DEFAULT_TOLERANCE", "read_record", "verify"]
