"""A new evidence metric is one entry and one registry line: it reaches rows, the gap, the verdict and every writer."""
from __future__ import annotations

import json

import numpy as np

from prunelora.config import EvidenceConfig
from prunelora.metrics.entry import Evidence, EvidenceInputs
from prunelora.metrics.evaluate import metrics_from_logits
from prunelora.metrics.registry import EVIDENCE, registered
from prunelora.metrics.spec import EVIDENCE as EVIDENCE_TABLE
from prunelora.metrics.spec import HIDES_ABOVE, METRICS, MetricSpec, gap_keys
from prunelora.metrics.summary import add_retrain_gap
from prunelora.metrics.verdict import add_verdicts
from prunelora.report import write_results
from prunelora.rows import make_row

DUMMY = MetricSpec("dummy_score", "Dummy score (%)", section=EVIDENCE_TABLE, digits=1, in_gap=True, floor=1.0,
                   verdict=HIDES_ABOVE, reason="dummy score")


def _dummy(inputs: EvidenceInputs) -> dict[str, float]:
    """The forget set's share of samples, in percent: a known value per model."""
    n = {k: len(v) for k, v in inputs.labels.items()}
    return {"dummy_score": 100.0 * n["forget_train"] / sum(n.values())}


def _logits(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    sizes = {"forget_train": 10, "retain_train": 30, "test_retain": 30, "test_forget": 10}
    labels = {k: rng.integers(0, 3, n) for k, n in sizes.items()}
    return {k: rng.normal(size=(n, 3)) for k, n in sizes.items()}, labels


def test_a_registered_metric_reaches_rows_gap_verdict_and_every_writer(tmp_path):
    evidence = EvidenceConfig(mia_draws=1, challenge=False, probe=False, relearn=False)
    with registered(Evidence("dummy", _dummy, (DUMMY,))):  # the one registry line
        assert list(EVIDENCE)[-1] == "dummy" and gap_keys()[-1] == "dummy_score"
        rows = []
        for method in ("retrain", "finetune"):
            metrics = metrics_from_logits(*_logits(0), seed=0, mia_cap=20,  # the same outputs: only the dummy differs
                                          evidence=evidence)
            rows.append(make_row("m", method, None if method == "retrain" else 1, metrics, sec_per_epoch=1.0,
                                 total_sec=2.0, peak_memory_mb=None, trainable_params=10, seed=0))
        assert rows[1]["dummy_score"] == 100.0 * 10 / 80
        rows[1]["dummy_score"] = 30.0  # 17.5 above Retrain's 12.5: the data is "hidden"
        add_retrain_gap(rows)
        add_verdicts(rows)
        finetune = rows[1]
        assert "dummy_score" in finetune["avg_gap_metrics"]
        assert finetune["verdict"] == "hides"
        assert finetune["verdict_reasons"] == "dummy score 30.0 % vs Retrain 12.5 % (tolerance 1.0)"
        assert finetune["avg_gap"] == 17.5 / len(finetune["avg_gap_metrics"])
        assert "dummy_score 1.0" in finetune["verdict_tolerances"]
        write_results({"config": {}, "rows": rows}, tmp_path)
        markdown = (tmp_path / "results.md").read_text()
        page = (tmp_path / "report.html").read_text()
    assert "dummy_score" not in METRICS and "dummy" not in EVIDENCE  # unregistered again
    assert json.loads((tmp_path / "results.json").read_text())["rows"][1]["dummy_score"] == 30.0
    assert "dummy_score" in (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    header = next(line for line in markdown.splitlines() if line.startswith("| Model | Method"))
    assert header.endswith("| Dummy score (%) |")
    assert "| 30.0 |" in markdown and "Dummy score (%)" in page and ">30.0</td>" in page
