"""One run per folder: another command or configuration is refused (nothing changes), the same run resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunelora import UserError, run_folder

from .helpers import copy_of, run_cli

SMOKE = ["--preset", "smoke", "--no-progress"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(smoke_run) -> Path:
    """The session's finished `reproduce --preset smoke` (both models, every method)."""
    return smoke_run


@pytest.fixture
def run_copy(smoke_run, tmp_path) -> Path:
    return copy_of(smoke_run, tmp_path)


@pytest.mark.slow
def test_a_second_command_into_a_run_folder_is_refused_and_nothing_changes(run_copy, capsys):
    before = snapshot(run_copy)
    checkpoint = next((run_copy / "cache").glob("resnet18-*.safetensors"))
    for argv in (["evaluate", "--checkpoint", checkpoint],
                 ["unlearn", "--checkpoint", checkpoint, "--method", "lora"],
                 ["train", "--models", "resnet18"],
                 ["reproduce", "--lr", "5e-4"]):
        rc, _, err = run_cli([*argv, *SMOKE, "--out", run_copy], capsys)
        assert rc == 2, err
        assert "already holds a 'reproduce' run" in err and "--overwrite" in err
        assert len(err.strip().splitlines()) == 1
        assert snapshot(run_copy) == before


@pytest.mark.slow
def test_the_same_run_resumes(run_copy, capsys, monkeypatch):
    import prunelora.runner as runner

    monkeypatch.setattr(runner, "fit", lambda *a, **k: pytest.fail("a finished stage was trained again"))
    rc, _, err = run_cli(["reproduce", *SMOKE, "--out", run_copy], capsys)
    assert rc == 0, err
    results = json.loads((run_copy / "results.json").read_text())
    assert results["reused"]["stages"] == 12  # two originals and five methods on each
    assert results["reused"]["sec"] > 0
    assert results["wall_sec"] == pytest.approx(results["elapsed_sec"] + results["reused"]["sec"])


@pytest.mark.slow
def test_overwrite_replaces_the_run_and_keeps_the_cache(run_copy, capsys):
    cache = snapshot(run_copy / "cache")
    rc, _, err = run_cli(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "lora", "--out", run_copy,
                          "--overwrite"], capsys)
    assert rc == 0, err
    rows = json.loads((run_copy / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"original", "lora"}
    assert not (run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors").exists()
    assert snapshot(run_copy / "cache") == cache
    assert json.loads((run_copy / "run.json").read_text())["identity"]["methods"] == ["lora"]


def test_a_folder_with_foreign_results_is_refused(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(UserError):
        run_folder.claim(tmp_path, "reproduce", {"a": 1})
    run_folder.claim(tmp_path / "fresh", "reproduce", {"a": 1})
    run_folder.claim(tmp_path / "fresh", "reproduce", {"a": 1})  # the same run: resumes
    with pytest.raises(UserError, match="different configuration"):
        run_folder.claim(tmp_path / "fresh", "reproduce", {"a": 2})


@pytest.mark.slow
def test_unlearn_and_evaluate_without_out_get_their_own_folders(finished, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = next((finished / "cache").glob("resnet18-*.safetensors")).resolve()
    unlearned = finished.resolve() / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors"
    written = []
    for argv in (["unlearn", "--checkpoint", checkpoint, "--method", "finetune", "--epochs", "1"],
                 ["evaluate", "--checkpoint", checkpoint], ["evaluate", "--checkpoint", unlearned]):
        rc, out, err = run_cli([*argv, *SMOKE], capsys)
        assert rc == 0, err
        written.append(Path(out.strip().splitlines()[-1].split()[1]).parent)
    assert len(set(written)) == 3
    assert written[0].parts[:2] == ("runs", "unlearn") and written[1].parts[:2] == ("runs", "evaluate")
    assert all((tmp_path / w / "results.json").is_file() for w in written)
    assert not (tmp_path / "runs" / "prunelora").exists()
