"""Fault injection on the command line: what a careful user and an attacker do to a run folder.

The rules asserted everywhere: a refusal is exit 2 (1 for a failure of the machine), one line on
stderr starting "prunelora: error:", no traceback, and nothing of the user's changed; an
interrupted or damaged run resumes to the uninterrupted run's results.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunelora import ledger, storage

from .helpers import run_cli

RUN = ["reproduce", "--preset", "smoke", "--models", "resnet18", "--methods", "finetune", "--threads", "1",
       "--no-progress", "--set", "evidence.relearn=false"]
# What a row measures (timings and the machine's load differ between runs).
MEASURED = ("method", "epochs", "ua", "ra", "ta", "mia_efficacy", "forget_test_acc", "challenge_auc",
            "probe_forget_acc")


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def measured(out: Path) -> list[tuple]:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return [tuple(r.get(k) for k in MEASURED) for r in rows]


def refused(rc: int, err: str, code: int = 2) -> None:
    assert rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunelora: error:"), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every resumed one must equal."""
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("faults") / "reference"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


# -- part 1: write only what prunelora owns ---------------------------------------------------------
@pytest.mark.slow
def test_dump_logits_never_replaces_a_file_it_did_not_write(reference, tmp_path, capsys):
    checkpoint = next((reference / "cache").glob("*.safetensors"))
    notes = tmp_path / "notes.npz"
    notes.write_bytes(b"the user's own notes")
    others = reference / "logits" / "resnet18_original.npz"  # another run's output
    before = others.read_bytes()
    for target in (notes, others):
        out = tmp_path / f"eval-{target.stem}"
        rc, _, err = run_cli(["evaluate", "--checkpoint", checkpoint, "--preset", "smoke", "--threads", "1",
                              "--no-progress", "--dump-logits", target, "--out", out], capsys)
        refused(rc, err)
        assert "was not written by this run" in err and str(target) in err
        assert not out.exists()
    assert notes.read_bytes() == b"the user's own notes" and others.read_bytes() == before
    # a new file is written, and the same command again resumes into it (the file is now its own)
    fresh = tmp_path / "fresh.npz"
    argv = ["evaluate", "--checkpoint", checkpoint, "--preset", "smoke", "--threads", "1", "--no-progress",
            "--dump-logits", fresh, "--out", tmp_path / "eval"]
    assert run_cli(argv, capsys)[0] == 0 and fresh.is_file()
    assert run_cli(argv, capsys)[0] == 0
    assert str(fresh) in json.loads((tmp_path / "eval" / "run.json").read_text())["outputs"]


@pytest.mark.slow
def test_a_folder_that_is_not_a_run_is_refused_even_with_overwrite(tmp_path, capsys, monkeypatch):
    (tmp_path / "config.yaml").write_text("# my own settings, with comments\nseeds: [0]\n")
    (tmp_path / "report.html").write_text("<p>my report</p>")
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    before = files(tmp_path)
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--overwrite"]):
        rc, _, err = run_cli([*RUN, "--config", "config.yaml", "--out", ".", *extra], capsys)
        refused(rc, err)
        assert "holds no prunelora run" in err
        assert files(tmp_path) == before


@pytest.mark.slow
def test_overwrite_removes_exactly_the_listed_files(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    photos = out / "seed2024_photos"
    photos.mkdir()
    (photos / "me.jpg").write_bytes(b"jpeg")
    (out / "seed0" / "models" / "mine.txt").write_text("a user's file inside the run's folder")
    cache = files(out / "cache")
    rc, _, err = run_cli([*RUN, "--methods", "retrain", "--out", out, "--overwrite"], capsys)
    assert rc == 0, err
    assert (photos / "me.jpg").read_bytes() == b"jpeg"
    assert (out / "seed0" / "models" / "mine.txt").is_file()
    assert not (out / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors").exists()
    assert files(out / "cache") == cache
    outputs = json.loads((out / "run.json").read_text())["outputs"]
    assert all((out / key).is_file() for key in outputs)
    assert not any(key.startswith("seed2024") or key.endswith("mine.txt") for key in outputs)


@pytest.mark.slow
def test_overwrite_never_deletes_through_a_link(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    elsewhere = tmp_path / "precious"
    shutil.move(out / "seed0", elsewhere)  # the user moved the folder away and left a link to it
    (out / "seed0").symlink_to(elsewhere, target_is_directory=True)
    before = files(elsewhere)
    rc, _, err = run_cli([*RUN, "--methods", "retrain", "--out", out, "--overwrite"], capsys)
    refused(rc, err)
    assert "symbolic link" in err
    assert files(elsewhere) == before


@pytest.mark.slow
def test_run_json_that_is_not_a_manifest_is_refused(tmp_path, capsys):
    for text in ("[]", "{not json", json.dumps({"command": "reproduce", "fingerprint": "x"})):
        out = tmp_path / f"run{len(text)}"
        out.mkdir()
        (out / "run.json").write_text(text)
        for extra in ([], ["--overwrite"]):
            rc, _, err = run_cli([*RUN, "--out", out, *extra], capsys)
            refused(rc, err)
            assert "not a run manifest" in err
        assert [p.name for p in out.iterdir()] == ["run.json"]


@pytest.mark.slow
def test_out_naming_a_file(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    rc, _, err = run_cli([*RUN, "--out", target], capsys)
    refused(rc, err)
    assert "is a file" in err and target.read_text() == "mine"


@pytest.mark.slow
def test_a_user_file_put_among_the_outputs_is_never_replaced(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "results.md").unlink()
    (out / "results.md").write_text("my notes")  # the user's file where the run writes its table
    manifest = json.loads((out / "run.json").read_text())
    del manifest["outputs"]["results.md"]
    (out / "run.json").write_text(json.dumps(manifest))
    rc, _, err = run_cli([*RUN, "--out", out], capsys)
    refused(rc, err)
    assert (out / "results.md").read_text() == "my notes"


@pytest.mark.slow
def test_two_processes_never_own_one_folder(tmp_path, capsys, monkeypatch):
    """While one command runs, the same command started into its folder is refused at once."""
    from prunelora.driver import Experiment

    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    second = {}
    rows = Experiment.reproduce_rows

    def race_then_run(self):
        second["done"] = subprocess.run([sys.executable, "-m", "prunelora", *RUN, "--out", str(out)], env=env,
                                        capture_output=True, text=True, timeout=300)
        return rows(self)

    monkeypatch.setattr(Experiment, "reproduce_rows", race_then_run)
    rc, _, err = run_cli([*RUN, "--out", out], capsys)
    assert rc == 0, err
    refused(second["done"].returncode, second["done"].stderr)
    assert "another prunelora process" in second["done"].stderr
    assert ledger.active() is None  # the claim ends with the command


# -- part 2: verify before resuming ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "edit", "remove"])
def test_a_damaged_output_is_redone_not_trusted(reference, tmp_path, capsys, damage):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    model = out / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "edit":
        data = bytearray(model.read_bytes())
        data[-1] ^= 1
        model.write_bytes(bytes(data))
    else:
        model.unlink()
    rc, _, err = run_cli([*RUN, "--out", out], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert any("resnet18 finetune" in w and "run again" in w for w in results["warnings"])
    assert measured(out) == measured(reference)
    redone, original = load_file(str(model)), load_file(str(reference / model.relative_to(out)))
    assert all(torch.equal(redone[k], original[k]) for k in original)


@pytest.mark.slow
def test_a_truncated_cached_original_is_retrained(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    cached = next((out / "cache").glob("*.safetensors"))
    cached.write_bytes(cached.read_bytes()[:500])
    rc, _, err = run_cli([*RUN, "--out", out], capsys)
    assert rc == 0, err
    assert measured(out) == measured(reference)
    assert storage.load_model(cached)[0] is not None


# -- interruption at any moment --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("moment,at_write", [("recorded", 1), ("recorded", 2), ("recorded", 4), ("recorded", 7),
                                             ("recorded", 10), ("landed", 1), ("landed", 3), ("landed", 8)])
def test_interrupted_after_any_write_resumes_to_the_same_results(reference, tmp_path, capsys, monkeypatch,
                                                                 moment, at_write):
    """Interrupted once the n-th file is written and recorded in run.json, or once it has landed (renamed into
    place) but before run.json's record of it: the resumed command must still see the file as this run's own
    (run.json lists it before it lands), never refuse it as a user's, and end with the same results."""
    out = tmp_path / "run"
    record = ledger.Ledger.record
    count = {"n": 0}

    def interrupt(self, path, *described):
        count["n"] += 1
        if moment == "recorded":
            record(self, path, *described)
        if count["n"] == at_write:
            raise KeyboardInterrupt
        if moment == "landed":
            record(self, path, *described)

    monkeypatch.setattr(ledger.Ledger, "record", interrupt)
    rc, _, err = run_cli([*RUN, "--out", out], capsys)
    assert rc == 130 and "interrupted" in err
    monkeypatch.setattr(ledger.Ledger, "record", record)
    rc, _, err = run_cli([*RUN, "--out", out], capsys)
    assert rc == 0, err
    assert measured(out) == measured(reference)
    assert not [p for p in out.rglob(".*") if p.name != "run.json"]  # no temporary file left behind


@pytest.mark.slow
def test_killed_process_resumes(reference, tmp_path):
    """A real SIGKILL in the middle of training, then the same command again."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "prunelora", *RUN, "--out", str(out)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cached = out / "cache"
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(cached.glob("*.safetensors")) and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert measured(out) == measured(reference)


# -- part 6: the operating system says no ----------------------------------------------------------
def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_resumes_once_there_is_space(reference, tmp_path, capsys):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=200k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out = disk / "run"
        rc, _, err = run_cli([*RUN, "--out", out], capsys)
        refused(rc, err, code=1)
        assert "No space left on device" in err and "rerun" in err
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        rc, _, err = run_cli([*RUN, "--out", out], capsys)
        assert rc == 0, err
        assert measured(out) == measured(reference)
    finally:
        _umount(disk)


def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    disk = tmp_path / "ro"
    if _mount_tmpfs(disk, "ro,size=1m"):
        try:
            rc, _, err = run_cli([*RUN, "--out", disk / "run"], capsys)
        finally:
            _umount(disk)
    elif os.geteuid() != 0:
        disk.mkdir()
        disk.chmod(0o500)
        rc, _, err = run_cli([*RUN, "--out", disk / "run"], capsys)
    else:
        pytest.skip("root without mount: no read-only folder can be made")
    refused(rc, err)
    assert "Read-only file system" in err or "Permission denied" in err


# -- part 4: values from checkpoint metadata -------------------------------------------------------
def _tampered(reference: Path, tmp_path: Path, **changes) -> Path:
    from safetensors.torch import load_file, save_file

    source = next((reference / "cache").glob("*.safetensors"))
    meta = {**storage.read_meta(source), **changes}
    path = tmp_path / "tampered.safetensors"
    save_file(load_file(str(source)), str(path), metadata={"format": storage.FORMAT, "meta": json.dumps(meta)})
    return path


@pytest.mark.parametrize("changes,says", [
    ({"model_args": {"width": 200000}}, "does not match model 'resnet18'"),
    ({"masked_classes": "a,b"}, "invalid masked_classes"),
    ({"masked_classes": "3,99"}, "invalid masked_classes"),
    ({"num_classes": 10**9}, "invalid num_classes"),
    ({"std": [0.0]}, "non-positive std"),
])
@pytest.mark.slow
def test_tampered_checkpoint_metadata_is_refused_before_allocating(reference, tmp_path, capsys, changes, says):
    import tracemalloc

    path = _tampered(reference, tmp_path, **changes)
    tracemalloc.start()
    rc, _, err = run_cli(["evaluate", "--checkpoint", path, "--preset", "smoke", "--threads", "1", "--no-progress",
                          "--out", tmp_path / "eval"], capsys)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    refused(rc, err)
    assert says in err
    assert peak < 200 * 2**20  # nothing near the 1.4 TB the metadata asks for
    assert not (tmp_path / "eval").exists()
