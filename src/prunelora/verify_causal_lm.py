"""`prunelora verify RECORD` for the causal-LM task's records (lm/run.py writes them beside each model).

Rehashes the delivered weight files, rereads the training data and rehashes the forgotten examples the
record names, reloads the model and its tokenizer, measures the forget and holdout examples again and
compares every forget-, holdout- and attack-figure and the Retrain-free verdict with the record. Retain
figures (a seeded draw of the retain set) and those against Retrain are listed as not re-run.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import storage
from .config.causal_lm import LMDataConfig
from .data.text.examples import read_examples, request_digest
from .driver.causal_lm import RECORD_FORMAT
from .driver.preflight import select_device
from .errors import UserError
from .metrics.causal_lm import measure as evaluate
from .metrics.causal_lm import verdicts
from .models.causal_lm.loading import load_causal_lm, quiet_transformers

FORMAT = RECORD_FORMAT


def weight_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): storage.file_digest(p) for p in sorted(folder.rglob("*.safetensors"))}


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tolerance
    return a == b


def verify_lm(record: dict[str, Any], folder: Path, model: str | None, dataset: str | None, tolerance: float,
              check: Callable[[bool, str, str], None]) -> None:
    """Each check said through `check(ok, what, detail)` (verify.py's)."""
    quiet_transformers()
    delivered = Path(model) if model else folder
    if not (delivered / "model").is_dir():
        raise UserError(f"{delivered / 'model'}: the delivered model is not there (give --model FOLDER, the folder "
                        "holding model/ and record.json)")
    found = weight_hashes(delivered)
    recorded = record["weights_sha256"]
    changed = sorted(k for k in set(recorded) | set(found) if recorded.get(k) != found.get(k))
    check(not changed, "model", f"{len(found)} weight file(s) of {delivered} "
          + ("have the recorded sha256" if not changed else f"differ from the record: {', '.join(changed[:3])}"))
    cfg = LMDataConfig(**{k: v for k, v in record["config"]["data"].items()})
    train_path = Path(dataset) if dataset else Path(record["data"]["train"])
    kind, train = read_examples(train_path, cfg)
    by_id = {ex.id: ex for ex in train}
    ids = record["request"]["ids"]
    forget = [by_id[i] for i in ids if i in by_id]
    same = len(forget) == len(ids) and request_digest(forget) == record["request"]["sha256"]
    check(same, "data", f"{len(ids)} forgotten examples of {train_path} "
          + ("have the recorded sha256" if same else "differ from the record (changed or missing)"))
    holdout = read_examples(record["data"]["holdout"], cfg, kind)[1] if record["data"].get("holdout") else []
    device = select_device("auto")
    net, tokenizer = load_causal_lm(f"hf:{delivered / 'model'}", device)
    measured = evaluate.measure(net, tokenizer, {"forget": forget, "holdout": holdout}, cfg.max_length, device)
    now = measured["summary"]
    then = record["measures"]
    compared = [k for k in now if k in then and not k.startswith("retain")]
    moved = [f"{k} {now[k]:.6g} vs {then[k]:.6g}" for k in compared if not _close(now[k], then[k], tolerance)]
    skipped = sorted(k for k in then if k.startswith(("retain", "model_utility", "forget_quality", "privleak")))
    check(not moved, "evidence", f"{len(compared)} figures measured again "
          + (f"agree with the record within {tolerance:g}" if not moved else f"differ: {'; '.join(moved[:4])}")
          + (f" (not re-run: {', '.join(skipped)})" if skipped else ""))
    verdict, _ = verdicts.without_retrain(now, len(forget), len(holdout))
    check(verdict == record["standalone_verdict"], "verdict", f"{verdict!r}" + (
        "" if verdict == record["standalone_verdict"] else f" now, {record['standalone_verdict']!r} in the record"))
    torch.set_grad_enabled(True)
