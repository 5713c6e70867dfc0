"""Faults and tampering, generated from real records: every field of a real record of each task (the image task's,
a sequence's second request, a causal LM's) deleted, given another type and given another value, each edit
verified in-process (prunelora.cli.main). None may verify (exit 0): each is caught (exit 1) or refused as malformed
(exit 2: one line naming the field, never a traceback). A field added to a record is walked the day it is added
(and refused as unknown until the schema, driver/record.py SCHEMA, knows it).

Three attackers: one who edits the file (the digest catches it); one who also computes the digest again (anyone
can: the fields verify re-derives from the model, the data, the code and the configuration still catch it; the
digested-only ones are what signing is for); one who edits a signed record (its signature catches every edit).
verify checks the record before measuring anything, so a tampered record costs milliseconds; where an edit needs
the model measured again, the measurement of the untouched record is reused (its inputs are unchanged)."""
from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prunelora.driver.record import DERIVED, DIGESTED, how_checked, sealed

from .helpers import run_cli

SMOKE = ["--preset", "smoke", "--no-progress"]
Path_ = tuple[Any, ...]  # a field's place: keys and list indices from the record's root


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the run's private key, its public key, an attacker's private key)."""
    from prunelora.signing import keygen

    folder = tmp_path_factory.mktemp("keys")
    keygen(folder / "run.pem", folder / "run.pub.pem")
    keygen(folder / "attacker.pem", folder / "attacker.pub.pem")
    return folder / "run.pem", folder / "run.pub.pem", folder / "attacker.pem"


@pytest.fixture(scope="module")
def records(tmp_path_factory, keys) -> dict[str, Path]:
    """One signed record per kind: the smoke image run's, a sequence's second request's (with its chain), a
    causal LM's."""
    from prunelora.cli import main

    root = tmp_path_factory.mktemp("tamper")
    sign = ["--sign-key", str(keys[0])]
    assert main(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune", "--out", str(root / "image"),
                 *sign]) == 0
    assert main(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune", "--epochs", "1", "--scenario",
                 "sequential", "--requests", "3,5", "--out", str(root / "sequence"), *sign]) == 0
    assert main(["reproduce", "--task", "causal-lm", *SMOKE, "--methods", "ga", "--out", str(root / "lm"),
                 *sign]) == 0
    return {"image": root / "image" / "seed0" / "models" / "resnet18" / "finetune_e2.record.json",
            "sequence": root / "sequence" / "seed0" / "models" / "resnet18" / "r2" / "finetune_e1.record.json",
            "causal-lm": root / "lm" / "seed0" / "models" / "llama" / "ga" / "record.json"}


KINDS = ["image", "sequence", "causal-lm"]


@pytest.fixture(autouse=True)
def one_parser(monkeypatch):
    """The command line's parser built once for the module's thousands of verify calls (building it is 85 % of a
    call that stops at the record: 25 ms, against 8 ms); parsing with it is what every call does."""
    from prunelora import cli

    monkeypatch.setattr(cli, "build_parser", _cached(cli.build_parser))


@functools.cache
def _cached(build):
    return functools.cache(build)


# -- the walk ------------------------------------------------------------------------------------------------------
def places(value: Any, at: Path_ = ()) -> Iterator[Path_]:
    """Every field below the root (objects' members; a list's first and last element)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*at, key)
            yield from places(item, (*at, key))
    elif isinstance(value, list) and value:
        for i in sorted({0, len(value) - 1}):
            yield (*at, i)
            yield from places(value[i], (*at, i))


def other_type(value: Any) -> Any:
    """A value of another JSON type than `value`'s."""
    if isinstance(value, bool):
        return "true"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 7
    if value is None:
        return []
    return {} if isinstance(value, list) else ["x"]


def other_value(value: Any) -> Any:
    """Another value of `value`'s type (None where it has no other: null), beyond verify's tolerance."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5 if math.isfinite(value) else 0.0
    if isinstance(value, str):
        hexed = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
        return value[:-1] + ("0" if value[-1] != "0" else "1") if hexed else value + "x"
    if isinstance(value, list):
        return value[:-1] if value else ["x"]
    if isinstance(value, dict):
        return {**value, "added": 1} if value else {"added": 1}
    return None


def edits(record: dict[str, Any]) -> Iterator[tuple[str, Path_, dict[str, Any]]]:
    """(what, where, the edited record) for every field: deleted, of another type, of another value."""
    for at in places(record):
        parent = record
        for part in at[:-1]:
            parent = parent[part]
        value = parent[at[-1]]
        for what, change in (("deleted", None), ("retyped", other_type), ("changed", other_value)):
            if what == "changed" and value is None:
                continue
            edited = copy.deepcopy(record)
            target = edited
            for part in at[:-1]:
                target = target[part]
            if change is None:
                del target[at[-1]]
            else:
                target[at[-1]] = change(value)
            yield what, at, edited


def dotted(at: Path_) -> str:
    return ".".join(str(p) for p in at)


def how(at: Path_, checked: dict[str, str]) -> str:
    """How verify checks the field at `at` (its own entry, else its nearest ancestor's)."""
    for n in range(len(at), 0, -1):
        key = dotted(tuple(p for p in at[:n] if not isinstance(p, int)))
        if key in checked:
            return checked[key]
    raise AssertionError(f"{dotted(at)}: no field of the schema")


def run_verify(capsys, path: Path, *extra) -> tuple[int, str, str]:
    return run_cli(["verify", path, *extra], capsys)


def judged(rc: int, out: str, err: str, at: Path_) -> str | None:
    """Why this verify's outcome is wrong (None: caught, or refused as malformed in one line naming the field)."""
    if rc == 0:
        return "verified"
    if rc == 2:
        lines = err.strip().splitlines()
        names = [str(p) for p in at if isinstance(p, str)]
        if len(lines) != 1 or not lines[0].startswith("prunelora: error:"):
            return f"exit 2 in {len(lines)} lines: {err.strip()[:200]}"
        if "malformed" in lines[0] and not any(name in lines[0] for name in names):
            return f"malformed, but the field is not named: {lines[0][:200]}"
        return None
    if rc != 1:
        return f"exit {rc}"
    return None if "NOT verified" in out else f"exit 1 without a conclusion: {out[-200:]}"


def walk(capsys, original: Path, make, *extra, only: str | None = None, reseal: bool = False) -> tuple[int, list[str]]:
    """Every edit of the record at `original`, written by make(edited) in its place and verified; the count and the
    edits whose outcome is wrong. only: the fields checked so (DERIVED, DIGESTED), None: all; reseal: make computes
    the digest again (an edit of the digest itself is then undone, and left out)."""
    text = original.read_text()
    record = json.loads(text)
    checked = how_checked(record)
    count, wrong = 0, []
    try:
        for what, at, edited in edits(record):
            if only is not None and (how(at, checked) != only or at[0] == "signature") or \
                    reseal and at[0] == "digest":
                continue  # the digest made again undoes an edit of itself; the unsigned attacker drops signatures
            written = make(edited)
            original.write_text(written)
            count += 1
            rc, out, err = run_verify(capsys, original, *extra)
            problem = judged(rc, out, err, at)
            if problem:
                wrong.append(f"{dotted(at)} {what}: {problem}")
    finally:
        original.write_text(text)
    return count, wrong


# -- the three attackers -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_untouched_record_verifies(records, keys, capsys, kind):
    rc, out, err = run_verify(capsys, records[kind], "--public-key", keys[1])
    assert rc == 0, out + err
    assert all(how_checked(json.loads(records[kind].read_text())).values())


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_edit_of_a_record_is_caught_or_malformed(records, capsys, kind):
    """The file edited, nothing else: its digest (or its schema) catches every edit."""
    count, wrong = walk(capsys, records[kind], json.dumps)
    assert count > 300 and not wrong, "\n".join(wrong[:20])


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_edit_of_a_signed_record_breaks_its_signature(records, keys, capsys, kind):
    """The digest computed again and the old signature kept, or the record signed again with another key: with the
    signer's public key, every edit is caught, the digested-only fields included."""
    def kept(edited):
        body = sealed({k: v for k, v in edited.items() if k != "signature"})
        return json.dumps({**body, "signature": edited["signature"]} if "signature" in edited else body)

    count, wrong = walk(capsys, records[kind], kept, "--public-key", keys[1], reseal=True)
    assert count > 300 and not wrong, "\n".join(wrong[:20])
    count, wrong = walk(capsys, records[kind], lambda edited: json.dumps(sealed(edited, keys[2])),
                        "--public-key", keys[1], reseal=True)
    assert count > 300 and not wrong, "\n".join(wrong[:20])


@pytest.fixture
def measured_once(monkeypatch):
    """verify's measurement of a record reused for every edit that leaves its inputs unchanged (the figures, the
    verdict, the cost and the like are compared after measuring, never read by it)."""
    from prunelora import verify

    unread = ("evidence", "verdict", "cost", "environment", "model_before", "digest", "signature")
    cache: dict[str, Any] = {}
    tasks = dict(verify.TASKS)

    def memo(task):
        def measured(record, *args):
            read = {k: v for k, v in record.items() if k not in unread}
            if isinstance(read.get("request"), dict):  # of the request, the task reads its number and ids only
                read["request"] = {k: v for k, v in read["request"].items() if k in ("request", "ids")}
            key = json.dumps([read, [str(a) for a in args]], sort_keys=True)
            if key not in cache:
                cache[key] = task(record, *args)
            return cache[key]
        return measured

    monkeypatch.setattr(verify, "TASKS", {name: memo(task) for name, task in tasks.items()})
    return cache


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_rederived_fields_are_caught_with_the_digest_computed_again(records, capsys, measured_once, kind):
    """An attacker who computes the digest again (and signs nothing): every field verify re-derives still
    differs (the request from the data, the figures measured again, the verdict and its reasons from the figures,
    the method, epochs, seed and model from the stored configuration, the files by content, the chain)."""
    def unsigned(edited):
        return json.dumps(sealed({k: v for k, v in edited.items() if k != "signature"}))

    count, wrong = walk(capsys, records[kind], unsigned, only=DERIVED, reseal=True)
    assert count > 100 and not wrong, "\n".join(wrong[:20])


@pytest.mark.slow
def test_digested_fields_are_what_a_signature_protects(records, capsys, measured_once):
    """What verify cannot derive again (the model before, the cost, the configuration's learning rate, the
    machine) verifies once its digest is computed again, and says the record is unsigned: signing is what
    protects those."""
    record_file = records["image"]
    text = record_file.read_text()
    record = json.loads(text)
    checked = how_checked(record)
    assert {checked["model_before.weights_sha256"], checked["cost.total_sec"], checked["config"]} == {DIGESTED}
    try:
        record["cost"]["total_sec"] = 0.001
        record_file.write_text(json.dumps(sealed({k: v for k, v in record.items() if k != "signature"})))
        rc, out, err = run_verify(capsys, record_file)
        assert rc == 0 and "unsigned: anyone could have written this record" in out, out + err
    finally:
        record_file.write_text(text)


@pytest.mark.slow
def test_a_field_the_schema_does_not_know_is_malformed(records, capsys):
    for kind, path in records.items():
        text = path.read_text()
        try:
            path.write_text(json.dumps(sealed({**json.loads(text), "reviewed_by": "me"})))
            rc, out, err = run_verify(capsys, path)
            assert rc == 2 and "reviewed_by: unknown field" in err and len(err.strip().splitlines()) == 1, (kind, err)
        finally:
            path.write_text(text)
