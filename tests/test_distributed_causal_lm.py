"""The causal-LM task under torchrun: 2 gloo processes on the CPU give the single process's run, written once."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_distributed import _env, _files

# float64 (torch's default dtype for the models transformers builds from a config): in float32 the two runs'
# different summation orders compound over the steps; in float64 any real difference shows.
FLOAT64_CLI = """
import sys

import torch

torch.set_default_dtype(torch.float64)
from prunelora.cli import main

sys.exit(main())
"""

RUN = ["reproduce", "--task", "causal-lm", "--preset", "smoke", "--methods", "retrain,npo,graddiff@prune+lora,rmu",
       "--no-progress", "--set", "unlearn.batch_size=4"]
METHODS = ["retrain", "npo", "graddiff@prune+lora", "rmu"]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The run in one process (float64)."""
    folder = tmp_path_factory.mktemp("lm-single")
    cli = folder / "float64_cli.py"
    cli.write_text(FLOAT64_CLI)
    one = subprocess.run([sys.executable, str(cli), *RUN, "--out", str(folder / "run")], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    return folder / "run"


@pytest.mark.slow
@pytest.mark.parametrize("parallel,extra", [("data", []), ("fsdp", ["--gradient-checkpointing"])],
                         ids=["data", "fsdp-checkpointing"])  # FSDP's sharding runs in the second, with recompute
def test_two_gloo_processes_match_one_process(single, parallel, extra, tmp_path):
    """Data parallel (every rank the whole model) and FSDP (each rank 1/2 of every weight, gradient and AdamW
    moment: full finetuning, PruneLoRA's adapters beside frozen weights, RMU's few trainable MLPs) with the
    blocks' activations recomputed in the backward pass give the single process's rows and files."""
    out = tmp_path / "parallel"
    cli = tmp_path / "float64_cli.py"
    cli.write_text(FLOAT64_CLI)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(cli), *RUN, *extra, "--parallel", parallel, "--out", str(out)], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 reports
    assert _files(out) == _files(single)
    rows_one = json.loads((single / "results.json").read_text())["rows"]
    rows_two = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows_one] == [r["method"] for r in rows_two] == ["original", *METHODS]
    for a, b in zip(rows_one[1:], rows_two[1:]):
        if parallel == "fsdp":  # each rank held half of every weight while training
            assert b["parallel"] == "fsdp" and b["ranks"] == 2 and b["rank_share"] == pytest.approx(0.5, abs=0.02)
            assert b.get("peak_memory_mb") is None  # the CPU meter cannot follow FSDP's storages: not measured
        else:
            assert "parallel" not in b and b["peak_memory_mb"] > 0
        for key in ("forget_loss", "retain_loss", "holdout_loss", "retain_utility", "mia_loss_auc"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["method"], key)
