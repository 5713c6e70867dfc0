"""One run per output folder, and a run writes only what it owns.

Every command claims its folder before writing anything: `run.json` holds the command, the
identity of its configuration and the manifest of every file the run wrote (ledger.py). A later
command into the same folder resumes when it is the same run and is refused otherwise unless the
user asks for `--overwrite`, which removes exactly the files the manifest lists (the cache of
trained originals, keyed by their own configuration, is kept), and never an input of the command itself
(its model folder, checkpoint, dataset, holdout or request file, when they lie in the folder: refused) nor a
file changed since the run wrote it (someone else's now: refused). A non-empty folder without a
run.json is not a prunelora run: it is refused, `--overwrite` included. While a command runs, it
holds an exclusive lock on its folder, so two processes can never both own it. A helper that rewrites a
finished run's files (a report page: rewriting()) obeys the same rule.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import distributed, ledger
from .config import fingerprint
from .errors import UserError
from .ledger import FORMAT, MANIFEST, Ledger

try:
    import fcntl
except ImportError:  # not POSIX: no lock (one process per folder is then the user's to keep)
    fcntl = None  # type: ignore[assignment]

CACHE = "cache/"  # trained originals, keyed by their configuration: kept by --overwrite
_lock_fd: int | None = None


def claim(out: str | Path, command: str, identity: dict[str, Any], overwrite: bool = False,
          targets: tuple[str | Path, ...] = (), reads: tuple[str | Path | None, ...] = ()) -> Path:
    """Make `out` this run's folder and activate its ledger: resume the same run, refuse any other.

    identity: everything that decides the run's results (the configuration without its output
    folder, the checkpoint's digest, ...). targets: files outside the folder the run will write
    (evaluate --dump-logits): each must be new or this run's own. reads: what the command reads (its
    model folder or checkpoint, dataset, holdout, request files; None and names that are no path are
    skipped): --overwrite deletes none of them. Raises UserError, having written (and deleted) nothing,
    on refusal. Under torchrun rank 0 decides and writes; every rank gets its answer.
    release() ends the claim (the CLI does, after every command).
    """
    read = tuple(Path(r) for r in reads if r is not None and str(r) and os.path.lexists(r))
    return distributed.on_main(lambda: _claim(Path(out), command, identity, overwrite, targets, read))


def release() -> None:
    """Deactivate the ledger and unlock the folder (idempotent)."""
    global _lock_fd
    ledger.activate(None)
    if _lock_fd is not None:
        os.close(_lock_fd)  # closing the descriptor drops the flock
        _lock_fd = None


def _read_manifest(out: Path) -> dict[str, Any] | None:
    """run.json of `out` (None: no run.json); a file that is not one of ours is refused."""
    path = out / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    try:
        manifest = json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else None
    except (ValueError, OSError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            not isinstance(manifest.get("outputs"), dict) or not isinstance(manifest.get("fingerprint"), str):
        raise UserError(f"{path} is not a run manifest this prunelora wrote (damaged, or from an older version "
                        "without a list of its outputs), so nothing in the folder can be known to be its own: "
                        "choose another --out, or remove the folder yourself")
    return manifest


def _preflight(out: Path, key: str, command: str, overwrite: bool, targets: tuple[Path, ...],
               reads: tuple[Path, ...] = ()) -> dict | None:
    """Every refusal, decided from what is on disk; returns the previous manifest (None: a new or empty folder)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: choose a folder")
    previous = _read_manifest(out) if out.is_dir() else None
    if previous is None and out.is_dir() and any(out.iterdir()):
        sample = sorted(p.name for p in out.iterdir())[:3]
        raise UserError(f"{out} is not empty and holds no prunelora run ({', '.join(sample)}, ...): prunelora "
                        "writes only into a new or empty folder or its own run's: choose another --out")
    if previous is not None and previous["fingerprint"] != key and not overwrite:
        what = f"a '{previous['command']}' run" if previous.get("command") else "another run's results"
        same = previous.get("command") == command
        raise UserError(f"{out} already holds {what}{' with a different configuration' if same else ''}; "
                        "choose another --out, or pass --overwrite to replace it")
    if previous is not None and previous["fingerprint"] != key:
        _refuse_deleting_inputs(out, previous["outputs"], reads)
    keep = previous["outputs"] if previous is not None and previous["fingerprint"] == key else {}
    probe = Ledger(out, {"outputs": dict(keep)})
    for target in targets:
        probe.check_target(target)
    return previous


def _refuse_deleting_inputs(out: Path, outputs: dict[str, Any], reads: tuple[Path, ...]) -> None:
    """--overwrite would delete the previous run's files: none may be (or lie inside) what this command reads."""
    inputs = [Path(os.path.realpath(r)) for r in reads]
    if not inputs:
        return
    listed = Ledger(out, {"outputs": dict(outputs)})
    for key in outputs:
        if key.startswith(CACHE):
            continue  # kept by --overwrite
        doomed = Path(os.path.realpath(listed.path(key)))
        hit = next((r for r in inputs if doomed == r or doomed.is_relative_to(r)), None)
        if hit is not None:
            what = f"{doomed}, part of {hit}," if doomed != hit else f"{doomed},"
            raise UserError(f"--overwrite would delete {what} which this command reads: copy it out of {out} first, "
                            "or choose another --out (nothing was deleted)")


def _claim(out: Path, command: str, identity: dict[str, Any], overwrite: bool,
           targets: tuple[str | Path, ...], reads: tuple[Path, ...] = ()) -> Path:
    release()
    key = fingerprint(command, identity)
    targets = tuple(Path(t) for t in targets)
    _preflight(out, key, command, overwrite, targets, reads)  # refusals first: nothing is created for a refused run
    out.mkdir(parents=True, exist_ok=True)
    _lock(out)
    try:
        previous = _preflight(out, key, command, overwrite, targets, reads)  # again, now that no one else can write
        fresh = {"format": FORMAT, "command": command, "fingerprint": key, "identity": identity,
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "outputs": {}}
        if previous is None:
            run = Ledger(out, fresh)
        elif previous["fingerprint"] == key:
            run = Ledger(out, previous)
        else:  # --overwrite: exactly the previous run's files go; its cache of originals stays ours
            run = Ledger(out, previous)
            run.remove_outputs(keep=(CACHE,))
            run = Ledger(out, {**fresh, "outputs": run.outputs})
        run.save()
    except BaseException:
        release()
        raise
    ledger.activate(run)
    return out


@contextlib.contextmanager
def rewriting(out: str | Path) -> Iterator[None]:
    """While a helper rewrites files of a finished run (`python -m prunelora.report.html OUT`): the folder locked,
    and a ledger that lets it replace only files run.json lists and nobody changed since (a page the user edited
    or wrote is refused, one line), and records what it writes there. A folder without run.json: new files only.
    Refusals are UserErrors, raised before anything is written."""
    out = Path(out)
    release()
    _lock(out)
    try:
        manifest = _read_manifest(out)
        ledger.activate(Ledger(out, manifest if manifest is not None else {"outputs": {}}, strict=True,
                               persist=manifest is not None))
        yield
    finally:
        release()


def _lock(out: Path) -> None:
    """An exclusive lock on the folder for this process's command: a second process is refused at once."""
    global _lock_fd
    if fcntl is None:
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{out} is being written by another prunelora process: wait for it to finish, or choose "
                        "another --out") from None
    _lock_fd = fd
