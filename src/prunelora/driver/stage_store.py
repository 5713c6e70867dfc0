"""A finished stage on disk: its record, written with the outputs it produced, and trusted again only when intact.

Both tasks' stage drivers keep their stages here (images: stages.py; causal LMs: lm/run.py): a stage's
record (<stage>.json) holds its fingerprint and the run.json keys of every file the stage wrote. A later
invocation reuses the stage only when the record reads, its fingerprint is the one asked for, and the
record and every listed output still have the size and sha256 run.json recorded (ledger.py): a truncated,
edited or removed output, or a damaged record, runs the stage again and the run's warnings say so.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import distributed, ledger, storage


def _problems(keys: Callable[[ledger.Ledger], list[str]]) -> list[str]:
    """What no longer matches run.json among the outputs `keys` names ([] outside a command, the Python API:
    nothing recorded to check against). Rank 0 holds the ledger; under torchrun every rank gets its answer."""
    def check() -> list[str]:
        run = ledger.active()
        return run.verify(keys(run)) if run is not None else []

    return distributed.on_main(check)


def verified(what: str, paths: Iterable[Path], warnings: list[str]) -> bool:
    """Whether these outputs of a finished stage are exactly as written (size and sha256 in run.json)."""
    paths = list(paths)
    problems = _problems(lambda run: [run.key(p) for p in paths])
    if problems:
        warnings.append(f"{what}: a finished stage's output no longer matches run.json ({problems[0]}): "
                        "the stage was run again")
    return not problems


def intact_folder(what: str, folder: Path, warnings: list[str]) -> bool:
    """Whether a folder this run wrote whole (a cached original) still holds every file run.json lists for it, as
    written; a folder run.json lists nothing of is not trusted ("not in run.json")."""
    def listed(run: ledger.Ledger) -> list[str]:
        prefix = run.key(folder) + "/"
        return [k for k in run.outputs if k.startswith(prefix)] or [run.key(folder)]

    problems = _problems(listed)
    if problems:
        warnings.append(f"{what}: an output no longer matches run.json ({problems[0]}): it was made again")
    return not problems


def finished(marker: Path, key: str, what: str, out: Path, warnings: list[str]) -> dict[str, Any] | None:
    """The record at `marker` when it is a finished stage with fingerprint `key` whose outputs are intact, else None.

    out: the run folder the record's `outputs` are relative to. A record that does not read as one (damaged,
    edited by hand) is reported in `warnings` and the stage runs again.
    """
    if not marker.is_file():
        return None
    try:
        saved = json.loads(marker.read_text())
        outputs = saved.get("outputs", []) if isinstance(saved, dict) else None
        if not isinstance(outputs, list) or not all(isinstance(k, str) for k in outputs):
            raise ValueError("not a stage record")
    except (ValueError, OSError):  # UnicodeDecodeError and json's errors are ValueErrors
        warnings.append(f"{what}: its stage record {marker} is damaged: the stage was run again")
        return None
    if saved.get("fingerprint") != key or not verified(what, [marker, *(out / k for k in outputs)], warnings):
        return None
    return saved


def write(marker: Path, key: str, outputs: list[str], **record: Any) -> None:
    """The stage's record: its fingerprint, what it holds (rows, measures, ...) and the outputs to verify later."""
    storage.write_json(marker, {"fingerprint": key, **record, "outputs": outputs})
