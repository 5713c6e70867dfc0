"""Adding a model, a scenario and an evidence metric is one file and one registry line each: with the three
registered (and nothing else edited), the command line offers them and one `reproduce` carries them into
results.json, results.md, report.html, the gap and the verdict."""
from __future__ import annotations

import json

import pytest

from prunelora.cli import build_parser, main
from prunelora.data.scenarios import SCENARIOS, register
from prunelora.metrics.entry import Evidence, EvidenceInputs
from prunelora.metrics.registry import registered
from prunelora.metrics.spec import EVIDENCE as EVIDENCE_TABLE
from prunelora.metrics.spec import HIDES_ABOVE, MetricSpec
from prunelora.models import REGISTRY

from .data.test_scenario_registry import LastClass
from .models.test_registry import tiny_spec

SHARE = MetricSpec("forget_share", "Forget share (%)", section=EVIDENCE_TABLE, digits=1, in_gap=True, floor=1.0,
                   verdict=HIDES_ABOVE, reason="forget share")


def forget_share(inputs: EvidenceInputs) -> dict[str, float]:
    """The forget set's share of the evaluated samples (%): the same for every method of a run."""
    n = {split: len(labels) for split, labels in inputs.labels.items()}
    return {"forget_share": 100.0 * n["forget_train"] / sum(n.values())}


@pytest.fixture
def extended(monkeypatch):
    monkeypatch.setitem(REGISTRY, "tiny", tiny_spec)  # a model: one registry line
    register(LastClass())  # a scenario: one registry line
    try:
        with registered(Evidence("forget_share", forget_share, (SHARE,))):  # an evidence metric: one registry line
            yield
    finally:
        del SCENARIOS["last"]


def help_of(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
    return " ".join(sub.choices[command].format_help().split())


def test_the_command_line_offers_what_was_registered(extended):
    text = help_of("reproduce")
    assert "tiny" in text and "last" in text


@pytest.mark.slow
def test_one_run_carries_the_new_model_scenario_and_metric_everywhere(extended, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["reproduce", "--preset", "smoke", "--models", "tiny", "--scenario", "last", "--methods",
               "retrain,finetune", "--set", "evidence.probe=false", "--set", "evidence.relearn=false",
               "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert {r["model"] for r in rows} == {"tiny"} and {r["scenario"] for r in rows} == {"last"}
    assert {r["forgotten_classes"] for r in rows} == {"9"}  # digits' last class
    finetune = next(r for r in rows if r["method"] == "finetune")
    retrain = next(r for r in rows if r["method"] == "retrain")
    assert finetune["forget_share"] == retrain["forget_share"] > 0.0
    assert "forget_share" in finetune["avg_gap_metrics"]  # it enters the gap
    assert "forget_share 1.0" in finetune["verdict_tolerances"]  # and the verdict
    assert "Forget share (%)" in (out / "results.md").read_text()
    page = (out / "report.html").read_text()
    assert "Forget share (%)" in page and "tiny" in page
