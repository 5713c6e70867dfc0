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

RUN = ["reproduce", "--task", "causal-lm", "--preset", "smoke", "--methods", "npo,graddiff@prune+lora",
       "--no-progress", "--set", "unlearn.batch_size=4"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    cli = tmp_path / "float64_cli.py"
    cli.write_text(FLOAT64_CLI)
    one = subprocess.run([sys.executable, str(cli), *RUN, "--out", str(single)], env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(cli), *RUN, "--out", str(parallel)], env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 reports
    assert _files(parallel) == _files(single)
    rows_one = json.loads((single / "results.json").read_text())["rows"]
    rows_two = json.loads((parallel / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows_one] == [r["method"] for r in rows_two] == ["npo", "graddiff@prune+lora"]
    for a, b in zip(rows_one, rows_two):
        for key in ("forget_loss", "retain_loss", "holdout_loss", "model_utility", "mia_loss_auc"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["method"], key)
