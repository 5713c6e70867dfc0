"""torchrun data parallelism: 2 gloo processes on the CPU give the single process's run, written once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelora import distributed

RUN = ["reproduce", "--preset", "smoke", "--models", "vit", "--methods", "retrain,finetune,lora,prunelora",
       "--threads", "1", "--no-progress", "--set", "evidence.relearn=false"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PRUNELORA_PRESET="smoke")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_single_process_helpers_are_identities():
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.shard_slice(7) == slice(0, 7)
    x = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(x, 3) is x
    assert distributed.on_main(lambda: 41) + 1 == 42


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_two_gloo_processes_match_one_process(tmp_path):
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    one = subprocess.run([sys.executable, "-m", "prunelora", *RUN, "--out", str(single)], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "prunelora", *RUN, "--out", str(parallel)], env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    # the table is printed once (rank 0), and the files are exactly the single run's: nothing twice, no scratch
    assert two.stdout.count("wrote ") == 1
    assert _files(parallel) == _files(single)
    rows_one = json.loads((single / "results.json").read_text())["rows"]
    rows_two = json.loads((parallel / "results.json").read_text())["rows"]
    assert [(r["method"], r["epochs"]) for r in rows_one] == [(r["method"], r["epochs"]) for r in rows_two]
    for a, b in zip(rows_one, rows_two):
        for key in ("ua", "ra", "ta"):
            assert b[key] == pytest.approx(a[key], abs=0.5), (a["method"], a["epochs"], key)
        logits_one = np.load(single / a["logits_file"])
        logits_two = np.load(parallel / b["logits_file"])
        for split in logits_one.files:
            np.testing.assert_allclose(logits_two[split], logits_one[split], rtol=1e-3, atol=2e-3,
                                       err_msg=f"{a['method']} {a['epochs']} {split}")
