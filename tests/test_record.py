"""A record beside every delivered model (driver/record.py) and `prunelora verify` (verify.py): it passes on an
untouched run and fails on a changed weight, a changed request or a broken chain; a model is identified by its
content, never by its file name; a record needs no request file to be verified; nothing a record names is run;
bad input (a malformed record, an earlier format, a bad --tolerance) is one line and exit 2."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunelora.driver.record import FORMAT, sealed
from prunelora.metrics.standalone import HIDDEN_IN_HEAD

from .helpers import REPO_ROOT, run_cli
from .test_user_models import saved_hf

SMOKE = ["--preset", "smoke", "--no-progress"]
UNSIGNED = "unsigned: anyone could have written this record"


def verify(capsys, record: Path, *extra) -> tuple[int, str]:
    rc, out, err = run_cli(["verify", str(record), *map(str, extra)], capsys)
    return rc, out + err


def rewrite(path: Path, change, reseal: bool = True) -> None:
    """The record at `path` changed by `change(record)`; resealed (its digest computed again), as the run would
    have written it, unless reseal=False."""
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(sealed(record) if reseal else record))


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """Digits at smoke size, 40 training images per class, forgetting 40 named training images."""
    from prunelora.cli import main

    root = tmp_path_factory.mktemp("named")
    (root / "request.txt").write_text("\n".join(str(i) for i in range(0, 400, 10)) + "\n")
    out = root / "run"
    rc = main(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune,rl", "--forget",
               str(root / "request.txt"), "--train-per-class", "40", "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture
def run_copy(named_run, tmp_path) -> Path:
    shutil.copytree(named_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_every_deliverable_has_a_record_that_verifies(named_run, capsys):
    models = named_run / "seed0" / "models" / "resnet18"
    records = sorted(models.glob("*.record.json"))
    assert [r.name for r in records] == ["finetune_e1.record.json", "finetune_e2.record.json",
                                         "rl_e1.record.json", "rl_e2.record.json"]
    record = json.loads(records[-1].read_text())
    assert record["format"] == FORMAT == "prunelora-record/2"
    assert record["request"]["ids"] == [str(i) for i in range(0, 400, 10)] and record["request"]["samples"] == 40
    assert record["model_after"]["weight_files"] and record["config"]["data"]["forget"]
    assert record["verdict"]["standalone"] and record["verdict"]["thresholds"]
    assert record["environment"]["torch"] == torch.__version__
    assert record["digest"] == sealed(record)["digest"] and "signature" not in record
    rc, said = verify(capsys, records[1])
    assert rc == 0, said
    for check in ("digest", "settings", "model", "data", "request file", "evidence", "verdict"):
        assert f"ok: {check}: " in said, (check, said)
    assert UNSIGNED in said and said.strip().endswith("verified: the delivered model is the one tested, on the data "
                                                      "the request named")


@pytest.mark.slow
def test_verify_fails_on_one_changed_weight(run_copy, capsys):
    weights = run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors"
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = state[name].clone()
    state[name].view(-1)[0] += 0.5
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        meta = handle.metadata()
    save_file(state, str(weights), metadata=meta)
    rc, said = verify(capsys, weights.with_suffix(".record.json"))
    assert rc == 1, said
    assert "DIFFERS: model" in said and "NOT verified" in said


@pytest.mark.slow
def test_a_corrupted_header_is_a_changed_model_not_an_error(run_copy, capsys):
    """Before: 'DIFFERS: model' then a traceback-free exit 2 from loading it. Now one outcome: the model differs."""
    weights = run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"{garbage!!!!"
    weights.write_bytes(bytes(data))
    rc, said = verify(capsys, weights.with_suffix(".record.json"))
    assert rc == 1 and "DIFFERS: model" in said and "error" not in said, said


@pytest.mark.slow
def test_a_copy_of_the_weights_under_another_name_is_the_same_model(run_copy, capsys):
    models = run_copy / "seed0" / "models" / "resnet18"
    copy = run_copy / "shipped-model.safetensors"
    shutil.copy(models / "finetune_e2.safetensors", copy)
    rc, said = verify(capsys, models / "finetune_e2.record.json", "--model", copy)
    assert rc == 0 and "ok: model" in said, said
    shutil.copy(models / "finetune_e1.safetensors", copy)  # another budget's weights: another model
    rc, said = verify(capsys, models / "finetune_e2.record.json", "--model", copy)
    assert rc == 1 and "DIFFERS: model" in said, said


@pytest.mark.slow
def test_a_request_file_changed_on_disk_is_said_and_the_records_ids_are_used(run_copy, capsys):
    record_file = run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.record.json"
    request = Path(json.loads(record_file.read_text())["config"]["data"]["forget"][0])
    saved = request.read_text()
    changed = run_copy.parent / "request.txt"
    changed.write_text("\n".join([*saved.split()[:-1], "401"]) + "\n")  # one id changed
    rewrite(record_file, lambda r: r["config"]["data"].__setitem__("forget", [str(changed)]))
    rc, said = verify(capsys, record_file)
    assert rc == 1, said
    assert "DIFFERS: request file" in said and "ok: data" in said and "ok: model" in said and "ok: evidence" in said


@pytest.mark.slow
@pytest.mark.parametrize("where", ["moved", "/dev/fd/63"])
def test_a_record_verifies_without_its_request_file(run_copy, tmp_path, capsys, where):
    """A request file moved away, or given as <(seq ...) (a pipe, gone once the run ended): the ids inside the
    record are the request."""
    record_file = run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.record.json"
    gone = str(tmp_path / "moved-away" / "request.txt") if where == "moved" else where
    rewrite(record_file, lambda r: r["config"]["data"].__setitem__("forget", [gone]))
    rc, said = verify(capsys, record_file)
    assert rc == 0, said
    assert "ok: data: 40 forgotten samples" in said and "is not there" in said


@pytest.mark.slow
def test_an_edited_record_is_caught_by_its_digest_before_anything_is_measured(run_copy, capsys, monkeypatch):
    from prunelora import verify as verify_module

    monkeypatch.setattr(verify_module, "TASKS", {})  # measuring would fail: nothing may be measured
    record_file = run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.record.json"
    rewrite(record_file, lambda r: r["request"].__setitem__("samples", 5), reseal=False)
    rc, said = verify(capsys, record_file)
    assert rc == 1 and "DIFFERS: digest" in said and "stopped at the record" in said, said


@pytest.mark.slow
def test_what_the_record_restates_is_derived_again(run_copy, capsys):
    """Even with its digest computed again (anyone can), a record whose request, evidence, verdict, method or
    epochs were changed does not verify: each is derived again from the model, the data, the code or the
    configuration."""
    record_file = run_copy / "seed0" / "models" / "resnet18" / "finetune_e2.record.json"
    original = record_file.read_text()
    cases = [
        (lambda r: r["request"].__setitem__("samples", 5), "DIFFERS: data"),
        (lambda r: r["request"].__setitem__("all_forgotten_sha256", "0" * 64), "DIFFERS: data"),
        (lambda r: r["evidence"].__setitem__("ua", None), "DIFFERS: evidence"),
        (lambda r: r["evidence"].pop("ua"), "DIFFERS: evidence"),
        (lambda r: r.__setitem__("evidence", {}), "DIFFERS: evidence"),
        (lambda r: r["verdict"].__setitem__("reasons", ["all good"]), "DIFFERS: verdict"),
        (lambda r: r.__setitem__("method", "retrain"), "DIFFERS: settings"),
        (lambda r: r.__setitem__("epochs", 200), "DIFFERS: settings"),
        (lambda r: r["config"]["unlearn"].__setitem__("epochs", [3]), "DIFFERS: settings"),
    ]
    for change, expected in cases:
        record_file.write_text(original)
        rewrite(record_file, change)
        rc, said = verify(capsys, record_file)
        assert rc == 1 and expected in said, said


@pytest.mark.slow
def test_logit_mask_is_hidden_in_the_head_without_retrain(tmp_path):
    from prunelora.cli import main

    out = tmp_path / "run"
    assert main(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune,logit-mask",
                 "--train-per-class", "40", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    masked = next(r for r in rows if r["method"] == "logit-mask")
    assert masked["standalone_verdict"] == HIDDEN_IN_HEAD, masked["standalone_reasons"]
    assert "retrain" not in {r["method"] for r in rows}
    text = (out / "results.md").read_text()
    assert text.startswith("**Answer:** resnet18: ")
    assert "Verdict without Retrain" in text
    assert "Answer" in (out / "report.html").read_text()


@pytest.mark.slow
def test_sequential_records_chain(tmp_path, capsys):
    from prunelora.cli import main

    out = tmp_path / "run"
    assert main(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune", "--epochs", "1",
                 "--scenario", "sequential", "--requests", "3,5", "--out", str(out)]) == 0
    models = out / "seed0" / "models" / "resnet18"
    first, second = models / "r1" / "finetune_e1.record.json", models / "r2" / "finetune_e1.record.json"
    assert json.loads(first.read_text())["previous_record"] is None
    link = json.loads(second.read_text())["previous_record"]
    assert (second.parent / link["path"]).resolve() == first.resolve()
    rc, said = verify(capsys, second)
    assert rc == 0 and "ok: chain" in said, said
    kept = second.read_text()
    rewrite(second, lambda r: r.__setitem__("previous_record", None))  # the chain cut, the digest made again
    rc, said = verify(capsys, second)
    assert rc == 1 and "names no previous record" in said, said
    second.write_text(kept)
    rewrite(first, lambda r: r["cost"].__setitem__("total_sec", 0.0))  # the earlier record rewritten
    rc, said = verify(capsys, second)
    assert rc == 1 and "DIFFERS: chain" in said, said


@pytest.mark.slow
def test_a_user_models_folder_holds_its_record(tmp_path_factory, tmp_path, capsys):
    from prunelora.cli import main

    source = saved_hf("vit", tmp_path_factory)
    out = tmp_path / "run"
    assert main(["unlearn", "--model", f"hf:{source}", "--method", "finetune", "--epochs", "1", "--out", str(out),
                 *SMOKE]) == 0
    folder = next((out / "seed0" / "models").iterdir()) / "finetune"
    record = json.loads((folder / "record.json").read_text())
    files = record["model_after"]["weight_files"]
    assert record["model_after"]["kind"] == "hf" and "model/config.json" in files and "model/model.safetensors" in files
    assert "record.json" not in files and all(not k.startswith("/") for k in files)
    rc, said = verify(capsys, folder / "record.json")
    assert rc == 0, said
    rc, said = verify(capsys, folder)  # the folder stands for its record.json
    assert rc == 0, said
    config = folder / "model" / "config.json"
    config.write_text(config.read_text() + "\n")  # not a weight, still part of the model
    rc, said = verify(capsys, folder)
    assert rc == 1 and "DIFFERS: model" in said and "model/config.json (changed)" in said, said


EVIL = "from pathlib import Path\nPath({marker!r}).write_text('ran')\ndef build():\n    return None\n"


@pytest.mark.slow
def test_verify_never_runs_code_a_record_names(run_copy, tmp_path, capsys, monkeypatch):
    """A record that says its model is built by code (model_after.kind "py", source "tempfile:mkstemp" or a module
    placed beside the record): verify imports and calls none of it, run from the record's folder or not; even the
    user's own --model-factory is imported from the installed packages and --factory-path only."""
    called = []
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: called.append(a) or pytest.fail("mkstemp ran"))
    models = run_copy / "seed0" / "models" / "resnet18"
    record_file = models / "finetune_e2.record.json"
    marker = tmp_path / "imported"
    (models / "evil_factory.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.chdir(models)
    for source in ("tempfile:mkstemp", "evil_factory:build"):
        rewrite(record_file, lambda r, s=source: r["model_after"].update(kind="py", source=s, mean=None, std=None))
        rc, said = verify(capsys, record_file)
        assert rc == 2 and "--model-factory" in said and "Traceback" not in said, said
    rc, said = verify(capsys, record_file, "--model-factory", "py:evil_factory:build")
    assert rc == 2 and "cannot import evil_factory" in said and "--factory-path" in said, said
    assert not marker.exists() and not called and "evil_factory" not in sys.modules


@pytest.mark.slow
def test_a_py_model_is_rebuilt_from_the_users_factory(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    from tests.zoo import TorchvisionResNet18

    weights = tmp_path / "resnet.safetensors"
    save_file(TorchvisionResNet18().state_dict(), str(weights))
    out = tmp_path / "run"
    rc, _, err = run_cli(["unlearn", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights", weights,
                          "--method", "finetune", "--epochs", "1", "--out", out, *SMOKE], capsys)
    assert rc == 0, err
    folder = next((out / "seed0" / "models").iterdir()) / "finetune"
    record_file = folder / "record.json"
    assert json.loads(record_file.read_text())["model_after"]["source"] == "tests.zoo:TorchvisionResNet18"
    called = []
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: called.append(a) or pytest.fail("mkstemp ran"))
    rewrite(record_file, lambda r: r["model_after"].__setitem__("source", "tempfile:mkstemp"))
    rc, said = verify(capsys, record_file)
    assert rc == 2 and "--model-factory" in said, said
    rc, said = verify(capsys, record_file, "--model-factory", "py:tests.zoo:TorchvisionResNet18", "--factory-path",
                      REPO_ROOT)
    assert rc == 0 and not called, said
    marker = tmp_path / "imported"
    (folder / "evil_factory.py").write_text(EVIL.format(marker=str(marker)))  # inside the delivered folder
    monkeypatch.chdir(folder)
    rc, said = verify(capsys, record_file, "--model-factory", "py:evil_factory:build", "--factory-path", folder)
    assert rc == 1 and "evil_factory.py (added)" in said, said  # the files are checked before anything is imported
    assert not marker.exists()


def test_verify_refuses_what_is_not_a_record(tmp_path, capsys):
    rc, said = verify(capsys, tmp_path / "missing.json")
    assert rc == 2 and "no such record" in said
    (tmp_path / "other.json").write_text('{"rows": []}')
    rc, said = verify(capsys, tmp_path / "other.json")
    assert rc == 2 and "not a prunelora record" in said and said.count("\n") == 1
    (tmp_path / "broken.json").write_text("{")
    rc, said = verify(capsys, tmp_path / "broken.json")
    assert rc == 2 and "not JSON" in said
    for earlier in ("prunelora-record/1", "prunelora-lm-record/1"):
        (tmp_path / "old.json").write_text(json.dumps({"format": earlier, "task": "image-classification"}))
        rc, said = verify(capsys, tmp_path / "old.json")
        assert rc == 2 and "rerun" in said and said.count("\n") == 1, said


@pytest.mark.parametrize("text, field", [
    ('{"format": "prunelora-record/2", "task": "image-classification", "deep": ' + "[" * 100_000 + "]" * 100_000
     + "}", "nested deeper"),
    ('{"format": "prunelora-record/2", "seed": NaN}', "NaN is not JSON"),
    ('{"format": "prunelora-record/2", "seed": 1e400}', "out of range"),
    ('{"format": "prunelora-record/2", "seed": 1, "seed": 2}', "appears twice"),
    ('{"format": "prunelora-record/2", "task": "image-classification"}', "model_after: missing"),
    ('{"format": "prunelora-record/2", "task": "video", "model_after": {}}', "task: must be"),
    ('{"format": "prunelora-record/2", "task": "causal-lm", "model_after": {"kind": "pickle"}}', "model_after.kind"),
    ('{"format": "prunelora-record/2", "task": "causal-lm", "model_after": {"kind": "hf-causal-lm"}}', "model: missing"),
])
def test_a_malformed_record_is_one_line(tmp_path, capsys, text, field):
    (tmp_path / "record.json").write_text(text)
    rc, said = verify(capsys, tmp_path / "record.json")
    assert rc == 2 and field in said and said.count("\n") == 1 and "Traceback" not in said, said


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1", "-0.5", "x"])
def test_tolerance_must_be_finite_and_not_negative(tmp_path, capsys, value):
    rc, said = verify(capsys, tmp_path / "record.json", "--tolerance", value)
    assert rc == 2 and "--tolerance" in said and said.count("\n") == 1, said
