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


# -- --overwrite never deletes the command's own inputs, nor a file someone changed; page helpers obey the manifest --
def test_overwrite_never_deletes_what_the_command_reads(tmp_path):
    """claim(reads=...): a previous run's file (or a folder of them) that this command reads is refused as a target,
    one line, nothing deleted."""
    from prunelora import storage

    out = tmp_path / "run"
    run_folder.claim(out, "reproduce", {"a": 1})
    storage.write_text(out / "data" / "train.jsonl", '{"id": "x"}\n')
    storage.write_text(out / "seed0" / "models" / "m" / "model" / "config.json", "{}")
    run_folder.release()
    before = snapshot(out)
    for reads in ((out / "data" / "train.jsonl",), (out / "seed0" / "models" / "m" / "model",),
                  (str(out / "data" / "train.jsonl"), None, "digits")):
        with pytest.raises(UserError, match="which this command reads") as caught:
            run_folder.claim(out, "unlearn", {"a": 2}, overwrite=True, reads=reads)
        assert "\n" not in str(caught.value) and "nothing was deleted" in str(caught.value)
        assert snapshot(out) == before
    run_folder.claim(out, "unlearn", {"a": 2}, overwrite=True, reads=(tmp_path / "elsewhere.jsonl", "digits"))
    run_folder.release()
    assert not (out / "data" / "train.jsonl").exists()


def test_overwrite_never_deletes_a_file_changed_since_the_run_wrote_it(tmp_path):
    from prunelora import storage

    out = tmp_path / "run"
    run_folder.claim(out, "reproduce", {"a": 1})
    storage.write_text(out / "results.md", "the run's table\n")
    storage.write_text(out / "report.html", "<p>the run's page</p>")
    run_folder.release()
    (out / "report.html").write_text("<p>my notes on the results</p>")  # the user's now
    before = snapshot(out)
    with pytest.raises(UserError, match="changed since the run wrote it"):
        run_folder.claim(out, "reproduce", {"a": 2}, overwrite=True)
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """`train --preset smoke --models resnet18`: its original lies in the run folder."""
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *SMOKE, "--models", "resnet18", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_unlearn_overwrite_never_deletes_the_checkpoint_it_reads(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    before = snapshot(run)
    checkpoint = run / "seed0" / "models" / "resnet18" / "original.safetensors"
    rc, _, err = run_cli(["unlearn", "--checkpoint", checkpoint, "--method", "finetune", *SMOKE, "--out", run,
                          "--overwrite"], capsys)
    assert rc == 2 and "which this command reads" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(run) == before


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """`reproduce --task causal-lm --preset smoke --methods ga`: its original model and data files lie in the run."""
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("lm") / "run"
    assert main(["reproduce", "--task", "causal-lm", *SMOKE, "--methods", "ga", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_a_language_model_unlearn_overwrite_never_deletes_its_model_and_data(lm_run, tmp_path, capsys):
    run = copy_of(lm_run, tmp_path)
    forget = tmp_path / "forget.txt"
    forget.write_text(json.loads((run / "data" / "train.jsonl").read_text().splitlines()[0])["id"] + "\n")
    before = snapshot(run)
    rc, _, err = run_cli(["unlearn", "--task", "causal-lm", "--model", f"hf:{run / 'seed0/models/llama/original/model'}",
                          "--dataset", run / "data" / "train.jsonl", "--forget", forget, "--methods", "ga", *SMOKE,
                          "--out", run, "--overwrite"], capsys)
    assert rc == 2 and "which this command reads" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(run) == before


@pytest.mark.slow
@pytest.mark.parametrize("page", ["prunelora.report.causal_lm_page", "prunelora.report.html"])
def test_a_page_helper_replaces_only_the_runs_own_page(lm_run, trained, tmp_path, capsys, page):
    """`python -m prunelora.report.<page> DIR`: the run's page (unchanged since) is rewritten and run.json says so;
    a page the user wrote or edited is refused (one line, exit 2) and kept."""
    import importlib

    main = importlib.import_module(page).main
    run = copy_of(lm_run if page.endswith("causal_lm_page") else trained, tmp_path)
    assert main([str(run)]) == 0
    manifest = json.loads((run / "run.json").read_text())["outputs"]
    from prunelora.ledger import describe_file

    assert manifest["report.html"] == describe_file(run / "report.html")
    (run / "report.html").write_text("<p>my own page</p>")
    capsys.readouterr()
    assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert "changed since the run wrote it" in err and len(err.strip().splitlines()) == 1, err
    assert (run / "report.html").read_text() == "<p>my own page</p>"
    (run / "run.json").unlink()  # no manifest: a page that is there is nobody's to replace
    assert main([str(run)]) == 2 and (run / "report.html").read_text() == "<p>my own page</p>"
