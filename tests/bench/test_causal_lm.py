"""`prunelora bench --task causal-lm`: every surgery against full finetuning with its objective, on a shape or a
user's model."""
from __future__ import annotations

import json

import pytest

from prunelora.bench.causal_lm import add_ratios

from ..helpers import run_cli


def test_ratios_compare_each_surgery_with_its_objective_on_the_whole_model():
    rows = [{"method": "npo", "sec_per_step": 2.0, "peak_memory_mb": 100.0},
            {"method": "npo@prune+lora", "sec_per_step": 1.0, "peak_memory_mb": 30.0},
            {"method": "graddiff@lora", "sec_per_step": 1.0, "peak_memory_mb": None}]
    add_ratios(rows)
    assert rows[0]["step_vs_full"] == 1.0 and rows[1]["step_vs_full"] == 0.5 and rows[1]["peak_vs_full"] == 0.3
    assert rows[2]["step_vs_full"] is None and rows[2]["peak_vs_full"] is None  # no GradDiff row to compare with


def test_the_bench_runs_every_surgery_on_a_tiny_shape(tmp_path, capsys):
    out = tmp_path / "bench"
    rc, printed, err = run_cli(["bench", "--task", "causal-lm", "--shape", "tiny", "--methods",
                                "npo,npo@prune,npo@lora,npo@prune+lora", "--steps", "1", "--no-progress",
                                "--out", out], capsys)
    assert rc == 0, err
    result = json.loads((out / "bench.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"npo", "npo@prune", "npo@lora", "npo@prune+lora"}
    assert rows["npo@prune"]["params"] < rows["npo"]["params"]  # the MLP physically smaller
    assert rows["npo@prune+lora"]["trainable_params"] < rows["npo@prune"]["trainable_params"]
    assert all(r["sec_per_step"] > 0 and r["step_vs_full"] is not None for r in result["rows"])
    assert "| NPO@PruneLoRA |" in printed and (out / "bench.md").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--methods", "retrain"], "without Retrain"),
    (["--steps", "0"], "at least 1"),
    (["--methods", "nonsense"], "nonsense"),
])
def test_bad_bench_options_are_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "bench"
    rc, _, err = run_cli(["bench", "--task", "causal-lm", "--shape", "tiny", *argv, "--out", out], capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written
