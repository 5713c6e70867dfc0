"""The manifest of what a run wrote: the only files prunelora may replace or delete.

While a command runs, its run folder's ledger is active: every atomic write (storage.atomic_path,
storage.atomic_dir) first asks it whether the target may be written (a new path, or one this run wrote
itself), then records the file's size and sha256 in run.json's `outputs`. `--overwrite` removes
exactly the listed files, and a finished stage is reused only when its files still match the
recorded hashes (a truncated or edited output is redone, never trusted). Nothing here follows a
symbolic link: a link in the way is refused, so a write or a deletion never reaches a user's files
through one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

MANIFEST = "run.json"
FORMAT = "prunelora-run/2"


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_hash(path)}


def link_in_the_way(root: Path, path: Path) -> Path | None:
    """The first symbolic link among the components of `path` below `root` (path itself included), or None."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return path if path.is_symlink() else None
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


class Ledger:
    """run.json of one run folder: its identity and the manifest of its outputs (relative path -> size, sha256).

    Paths outside the folder (evaluate --dump-logits FILE) are listed by their absolute path. strict: a file this
    run wrote is replaced only while it is still as written (a helper rewriting a finished run's page: a page the
    user edited since is theirs); persist=False: run.json is never written (a folder that holds none).
    """

    def __init__(self, root: Path, manifest: dict[str, Any], strict: bool = False, persist: bool = True) -> None:
        self.root = root.absolute()
        self.manifest = manifest
        self.manifest.setdefault("outputs", {})
        self.strict, self.persist = strict, persist
        self._scratch: list[Path] = []  # open atomic_dir folders: what is written inside them is recorded with them
        self._captured: list[list[str]] | None = None

    # -- naming -----------------------------------------------------------------------------
    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return self.manifest["outputs"]

    def key(self, path: str | Path) -> str:
        path = Path(os.path.abspath(path))
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def path(self, key: str) -> Path:
        return Path(key) if os.path.isabs(key) else self.root / key

    def owns(self, path: str | Path) -> bool:
        return self.key(path) in self.outputs

    def _inside_scratch(self, path: Path) -> bool:
        path = Path(os.path.abspath(path))
        return any(path.is_relative_to(s) for s in self._scratch)

    # -- the rule ---------------------------------------------------------------------------
    def check_target(self, path: str | Path, directory: bool = False) -> None:
        """Refuse to write `path` unless it is new or this run's own (a folder: every file in it this run's)."""
        path = Path(os.path.abspath(path))
        if self._inside_scratch(path):
            return
        link = link_in_the_way(self.root, path)
        if link is not None:
            raise UserError(f"{link} is a symbolic link: prunelora never writes through links; remove it or choose "
                            "another --out")
        if not path.exists():
            return
        if directory and path.is_dir():
            foreign = next((p for p in _files_below(path) if not self.owns(p)), None)
        else:
            foreign = None if path.is_file() and self.owns(path) else path
        if foreign is not None:
            raise UserError(f"{foreign} exists and was not written by this run: prunelora never replaces files it "
                            "did not write; move it away or choose another --out")
        if self.strict:
            changed = next((p for p in (_files_below(path) if path.is_dir() else [path]) if self.verify([self.key(p)])),
                           None)
            if changed is not None:
                raise UserError(f"{changed} changed since the run wrote it, so it is someone else's now: prunelora "
                                "never replaces it; move it away first")

    def intend(self, path: str | Path, staged: str | Path) -> dict[str, dict[str, Any]]:
        """Before a staged file (or folder) is renamed onto `path`: list what will land there, described from the
        staged copy, in run.json (write-ahead). A process killed between the rename and record() then still owns
        the file when the same command resumes; killed before the rename, the listed hash no longer matches and
        the stage is redone. Returns the descriptions, for record() to reuse rather than hash the bytes again."""
        path, staged = Path(os.path.abspath(path)), Path(staged)
        if self._inside_scratch(path):
            return {}
        if staged.is_dir():
            described = {self.key(path / f.relative_to(staged)): describe_file(f) for f in _files_below(staged)}
        else:
            described = {self.key(path): describe_file(staged)}
        self.outputs.update(described)
        self.save()
        return described

    def record(self, path: str | Path, described: dict[str, dict[str, Any]] | None = None) -> None:
        """After a successful write: the file (or every file of the folder) as it now is, in run.json
        (`described`: what intend() measured of the same bytes before the rename and already saved; run.json is
        written again only when something differs from it, such as a replaced folder's old files)."""
        path = Path(os.path.abspath(path))
        if self._inside_scratch(path):
            return
        described = described or {}
        prefix = self.key(path) + "/"
        stale = [k for k in self.outputs if k.startswith(prefix) and k not in described]  # a replaced folder's
        for key in stale:                                                                   # old files
            del self.outputs[key]
        changed = bool(stale)
        files = list(_files_below(path)) if path.is_dir() else [path]
        for file in files:
            key = self.key(file)
            if key not in described:
                self.outputs[key] = describe_file(file)
                changed = True
            if self._captured is not None:
                for capture in self._captured:
                    capture.append(key)
        if changed:
            self.save()

    def verify(self, keys: Iterable[str]) -> list[str]:
        """What no longer matches run.json among these outputs: '<path>: missing' and the like ([] when all match)."""
        problems = []
        for key in keys:
            expected, path = self.outputs.get(key), self.path(key)
            if expected is None:
                problems.append(f"{key}: not in run.json")
            elif path.is_symlink() or not path.is_file():
                problems.append(f"{key}: missing")
            elif path.stat().st_size != expected["bytes"]:
                problems.append(f"{key}: {path.stat().st_size} bytes, {expected['bytes']} when written")
            elif file_hash(path) != expected["sha256"]:
                problems.append(f"{key}: its content changed since it was written")
        return problems

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        """The keys recorded inside the block (a stage's outputs, to verify before it is reused)."""
        written: list[str] = []
        self._captured = (self._captured or []) + [written]
        try:
            yield written
        finally:
            self._captured = [c for c in self._captured if c is not written] or None

    @contextlib.contextmanager
    def scratch(self, folder: Path) -> Iterator[None]:
        folder = Path(os.path.abspath(folder))
        self._scratch.append(folder)
        try:
            yield
        finally:
            self._scratch.remove(folder)

    # -- removal ----------------------------------------------------------------------------
    def remove_outputs(self, keep: tuple[str, ...] = ()) -> None:
        """Delete exactly the listed files (but those under `keep` prefixes), then the folders left empty.

        Checked first, deleted after: a link in the way, or a listed file changed since it was written (someone
        else's now), refuses the whole removal, nothing deleted.
        """
        doomed = [k for k in self.outputs if not k.startswith(keep)]
        for key in doomed:
            link = link_in_the_way(self.root, self.path(key).parent)
            if link is not None:
                raise UserError(f"{link} is a symbolic link: --overwrite never deletes through links; remove it "
                                "yourself or choose another --out")
        changed = next((k for k in doomed if self.path(k).is_file() and not self.path(k).is_symlink()
                        and self.verify([k])), None)
        if changed is not None:
            raise UserError(f"--overwrite: {self.path(changed)} changed since the run wrote it, so it is someone "
                            "else's now and is never deleted: move it away first, or choose another --out")
        folders = set()
        for key in doomed:
            path = self.path(key)
            if path.is_symlink() or path.is_file():
                path.unlink()
            del self.outputs[key]
            folders.update(p for p in path.parents if p != self.root and p.is_relative_to(self.root))
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a user's file inside keeps its folder
        self.save()

    def save(self) -> None:
        """run.json, atomically (a temporary file renamed over it); nothing when this ledger does not persist."""
        if not self.persist:
            return
        target = self.root / MANIFEST
        fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.manifest, handle, indent=2, default=str)
                handle.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _files_below(folder: Path) -> Iterator[Path]:
    """Every file under `folder`, never descending through a link (a link is listed as itself)."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            yield Path(top) / name


_active: Ledger | None = None


def active() -> Ledger | None:
    """The ledger of the command now running in this process (None outside a command: the Python API)."""
    return _active


@contextlib.contextmanager
def capture() -> Iterator[list[str]]:
    """The outputs the active ledger records inside the block ([] outside a command)."""
    if _active is None:
        yield []
        return
    with _active.capture() as written:
        yield written


def activate(ledger: Ledger | None) -> None:
    global _active
    _active = ledger
