"""A record beside every delivered model (driver/record.py) and `prunelora verify` (verify.py): it passes on an
untouched run and fails on a changed weight, a changed request or a broken chain; bad input is exit 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunelora.metrics.standalone import HIDDEN_IN_HEAD

from .helpers import run_cli
from .test_user_models import saved_hf

SMOKE = ["--preset", "smoke", "--no-progress"]


def verify(capsys, record: Path, *extra) -> tuple[int, str]:
    rc, out, err = run_cli(["verify", str(record), *map(str, extra)], capsys)
    return rc, out + err


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


@pytest.mark.slow
def test_every_deliverable_has_a_record_that_verifies(named_run, capsys):
    models = named_run / "seed0" / "models" / "resnet18"
    records = sorted(models.glob("*.record.json"))
    assert [r.name for r in records] == ["finetune_e1.record.json", "finetune_e2.record.json",
                                         "rl_e1.record.json", "rl_e2.record.json"]
    record = json.loads(records[-1].read_text())
    assert record["request"]["ids"] == [str(i) for i in range(0, 400, 10)] and record["request"]["samples"] == 40
    assert record["model_after"]["weight_files"] and record["config"]["data"]["forget"]
    assert record["verdict"]["standalone"] and record["verdict"]["thresholds"]
    assert record["environment"]["torch"] == torch.__version__
    rc, said = verify(capsys, records[1])
    assert rc == 0, said
    assert said.count("ok: ") == 4 and "verified" in said


@pytest.mark.slow
def test_verify_fails_on_one_changed_weight(named_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(named_run, run)
    weights = run / "seed0" / "models" / "resnet18" / "finetune_e2.safetensors"
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
def test_verify_fails_when_the_request_names_another_sample(named_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(named_run, run)
    record_file = run / "seed0" / "models" / "resnet18" / "finetune_e2.record.json"
    request = Path(json.loads(record_file.read_text())["config"]["data"]["forget"][0])
    changed = tmp_path / "request.txt"
    ids = request.read_text().split()
    changed.write_text("\n".join([*ids[:-1], "401"]) + "\n")  # one id changed
    record = json.loads(record_file.read_text())
    record["config"]["data"]["forget"] = [str(changed)]
    record_file.write_text(json.dumps(record))
    rc, said = verify(capsys, record_file)
    assert rc == 1, said
    assert "DIFFERS: data" in said and "ok: model" in said


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
    record = json.loads(first.read_text())
    record["cost"]["total_sec"] = 0.0  # the earlier record rewritten
    first.write_text(json.dumps(record))
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
    assert record["model_after"]["kind"] == "hf" and any(k.startswith("model/") for k in
                                                            record["model_after"]["weight_files"])
    rc, said = verify(capsys, folder / "record.json")
    assert rc == 0, said
    rc, said = verify(capsys, folder)  # the folder stands for its record.json
    assert rc == 0, said


def test_verify_refuses_what_is_not_a_record(tmp_path, capsys):
    rc, said = verify(capsys, tmp_path / "missing.json")
    assert rc == 2 and "no such record" in said
    (tmp_path / "other.json").write_text('{"rows": []}')
    rc, said = verify(capsys, tmp_path / "other.json")
    assert rc == 2 and "not a prunelora record" in said and said.count("\n") == 1
    (tmp_path / "broken.json").write_text("{")
    rc, said = verify(capsys, tmp_path / "broken.json")
    assert rc == 2 and "not JSON" in said
