"""One run per output folder: a folder holding another run's results is never written over.

Every command writes `run.json` (its command and the identity of its configuration) into its
folder before anything else. A later command into the same folder resumes when it is the same
run, and is refused otherwise unless the user asks for `--overwrite`, which clears the previous
run's outputs (the cache of trained originals, keyed by their own configuration, is kept).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from . import io
from .config import fingerprint
from .errors import UserError

MANIFEST = "run.json"
# What a run writes besides cache/: removed by --overwrite, and the sign that a folder holds results.
RESULT_FILES = ("results.json", "results.md", "results.csv", "config.yaml", "report.html")
RESULT_DIRS = ("plots", "logits")


def _previous(out: Path) -> dict[str, Any] | None:
    """The manifest of the run in `out`: None for a folder without results; {} for foreign results."""
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text())
        except ValueError:
            return {}
    if any((out / name).exists() for name in RESULT_FILES[:2]):
        return {}
    return None


def _clear(out: Path) -> None:
    """Remove a previous run's outputs (never the cache of originals, never unrelated files)."""
    for name in (MANIFEST, *RESULT_FILES):
        (out / name).unlink(missing_ok=True)
    for path in [out / d for d in RESULT_DIRS] + sorted(out.glob("seed[0-9]*")):
        if path.is_dir():
            shutil.rmtree(path)


def claim(out: str | Path, command: str, identity: dict[str, Any], overwrite: bool = False) -> Path:
    """Make `out` this run's folder: resume the same run, refuse another one unless `overwrite`.

    identity: everything that decides the run's results (the configuration without its output
    folder, the checkpoint's digest, ...). Raises UserError, having written nothing, on refusal.
    Under torchrun rank 0 decides and every rank gets its answer.
    """
    from . import distributed

    return distributed.on_main(lambda: _claim(out, command, identity, overwrite))


def _claim(out: str | Path, command: str, identity: dict[str, Any], overwrite: bool) -> Path:
    out = Path(out)
    key = fingerprint(command, identity)
    previous = _previous(out) if out.is_dir() else None
    if previous is not None and previous.get("fingerprint") != key:
        if not overwrite:
            what = (f"a '{previous['command']}' run" if previous.get("command") else "another run's results")
            same = previous.get("command") == command
            raise UserError(f"{out} already holds {what}{' with a different configuration' if same else ''}; "
                            "choose another --out, or pass --overwrite to replace it")
        _clear(out)
        previous = None
    if previous is None:
        io.write_json(out / MANIFEST, {"command": command, "fingerprint": key, "identity": identity,
                                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return out
