"""torchrun data parallelism: 2 gloo processes on the CPU give the single process's run, written once."""
from __future__ import annotations

import copy
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunelora import distributed
from prunelora.sync_batchnorm import synchronized

# Both model families, batch norm included (the ResNet), every kind of training: from scratch (retrain), all
# weights (finetune), adapters (lora), pruning + batch norm recalibration + adapters (prunelora).
# The ResNet's LoRA dropout stays at its default (0.1): each rank cuts its shard's rows out of the global batch's mask.
RUN = ["reproduce", "--preset", "smoke", "--models", "vit,resnet18", "--methods", "retrain,prunelora",
       "--threads", "1", "--no-progress", "--set", "evidence.relearn=false", "--set", "evidence.challenge=false",
       "--set", "evidence.probe=false"]  # compared: the outputs (prunelora prunes and adapts), not the attacks

# The CLI in float64 (torch's default dtype, and images converted to it). In float32 the smoke ResNet amplifies
# float error without bound: a single process whose weights are scaled by 1 + 1e-7 ends pre-training 0.07 away
# from itself, and a pruning mask then flips channels (the 1- and 2-process runs differ by a few points of RA for
# that reason alone). In float64 the same runs agree to ~1e-12, so any real difference shows.
FLOAT64_CLI = '''
import sys

import torch

torch.set_default_dtype(torch.float64)
import prunelora.data
import prunelora.data.batches as batches

original = batches.to_float


def to_float(images):
    return images.double().div_(255.0) if images.dtype == torch.uint8 else images.double()


import prunelora.cli  # noqa: E402

for module in list(sys.modules.values()):  # every module that imported the function by name
    if getattr(module, "__name__", "").startswith("prunelora") and getattr(module, "to_float", None) is original:
        module.to_float = to_float
sys.exit(prunelora.cli.main(sys.argv[1:]))
'''


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
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with synchronized(model):  # nothing to synchronise: nothing changes
        assert "forward" not in model[1].__dict__


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    cli = tmp_path / "float64_cli.py"
    cli.write_text(FLOAT64_CLI)
    one = subprocess.run([sys.executable, str(cli), *RUN, "--out", str(single)], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(cli), *RUN, "--out", str(parallel)], env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    # the table is printed once (rank 0), and the files are exactly the single run's: nothing twice, no scratch
    assert two.stdout.count("wrote ") == 1
    assert _files(parallel) == _files(single)
    rows_one = json.loads((single / "results.json").read_text())["rows"]
    rows_two = json.loads((parallel / "results.json").read_text())["rows"]
    assert [(r["model"], r["method"], r["epochs"]) for r in rows_one] == \
        [(r["model"], r["method"], r["epochs"]) for r in rows_two]
    assert {r["model"] for r in rows_one} == {"vit", "resnet18"}
    for a, b in zip(rows_one, rows_two):
        for key in ("ua", "ra", "ta"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["model"], a["method"], a["epochs"], key)
        logits_one = np.load(single / a["logits_file"])
        logits_two = np.load(parallel / b["logits_file"])
        for split in logits_one.files:
            np.testing.assert_allclose(logits_two[split], logits_one[split], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{a['model']} {a['method']} {a['epochs']} {split}")


# -- synchronised batch norm against plain batch norm on the concatenated batch ------------------------------

def _net(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Tanh(),
                         nn.Conv2d(4, 2, 1, bias=False), nn.BatchNorm2d(2, momentum=None), nn.Tanh(), nn.Flatten(2),
                         nn.BatchNorm1d(2)).to(dtype)


# (global batch, rows per rank): None = distributed.shard_slice's split (Feed's), "whole" = every rank holds the
# whole batch (Feed's batches smaller than the ranks, which it does not mark as a shard)
CASES = [(7, None), (9, (2, 7)), (5, (5, 0)), (1, "whole"), (2, None), (3, (0, 3)), (6, (3, 3))]


def _batch_norm_worker(rank: int, world: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=120))
    try:
        for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            _compare_with_plain(rank, dtype, tol)
        _plain_outside(rank)
    finally:
        torch.distributed.destroy_process_group()


def _compare_with_plain(rank: int, dtype: torch.dtype, tol: float) -> None:
    model, reference = _net(dtype), _net(dtype)
    keys = list(model.state_dict())
    generator = torch.Generator().manual_seed(1)
    for step, (n, split) in enumerate(CASES):
        x = (torch.randn(n, 3, 5, 5, generator=generator) * 3 + 1).to(dtype)
        target = torch.randn(n, 2, 25, generator=generator).to(dtype)
        if split == "whole":
            rows = slice(0, n)
        elif split is None:
            rows = distributed.shard_slice(n)
        else:
            rows = slice(sum(split[:rank]), sum(split[:rank + 1]))
        mine = x[rows].requires_grad_()
        # as train.fit: each rank's mean loss weighted by its share of the batch, gradients averaged over the ranks
        with synchronized(model):
            out = distributed.sharded_forward(model)(mine if split == "whole" else
                                                     distributed.mark_shard(mine, n, rows.start))
            loss = ((out - target[rows]) ** 2).sum((1, 2)).mean() if len(mine) else out.sum()
            model.zero_grad()
            (loss * distributed.shard_weight(len(mine))).backward()
        distributed.average_gradients(list(model.parameters()))
        ref_x = x.clone().requires_grad_()
        ref_out = reference(ref_x)
        reference.zero_grad()
        ((ref_out - target) ** 2).sum((1, 2)).mean().backward()
        what = f"rank {rank} {dtype} step {step} batch {n} split {split}"

        def close(actual, expected, name="", what=what):
            torch.testing.assert_close(actual, expected, rtol=tol, atol=tol, msg=lambda m: f"{what} {name}\n{m}")

        close(out, ref_out[rows], "output")
        # an input's gradient carries the loss weight: the ranks' share of a split batch, 1 for a whole one
        scale = 1 if split == "whole" else distributed.world_size()
        close(mine.grad, scale * ref_x.grad[rows], "input's gradient")
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            close(p.grad, q.grad, f"{name}.grad")
        for (name, b), c in zip(model.named_buffers(), reference.buffers()):
            close(b, c, name)
        with torch.no_grad():  # the next step starts from the same weights on every rank
            for p, q in zip(model.parameters(), reference.parameters()):
                p.sub_(0.01 * p.grad)
                q.sub_(0.01 * q.grad)
    # the saved model is what it was: plain batch norms, the same state_dict keys, no forward left behind
    assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    assert list(model.state_dict()) == keys
    assert not any("forward" in m.__dict__ for m in model.modules())


def _plain_outside(rank: int) -> None:
    """Eval mode, a deep copy made inside the context, and rank 0 alone (distributed.on_main) run plain batch norm:
    no collective (the other rank would never join it: a hang until the timeout), the rank's own statistics."""
    model, fresh = _net(torch.float32), _net(torch.float32)
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(rank))
    with synchronized(model):
        copied = copy.deepcopy(model)
        if rank == 0:
            for _ in range(3):  # train mode: batch statistics, running statistics updated alike
                torch.testing.assert_close(copied(x), fresh(x))
            for a, b in zip(copied.buffers(), fresh.buffers()):
                torch.testing.assert_close(a, b)
            model.eval()
            model(x)
            model.train()
        batch = torch.randn(6, 3, 5, 5, generator=torch.Generator().manual_seed(7))
        rows = distributed.shard_slice(len(batch))
        with synchronized(copied):  # a copy trained inside (relearn time's student)
            shard = distributed.mark_shard(batch[rows], len(batch), rows.start)
            torch.testing.assert_close(distributed.sharded_forward(copied)(shard), _net(torch.float32)(batch)[rows])
        if rank == 0:
            copied(x)  # plain again
        alone = distributed.on_main(lambda: model(x).detach())
    if rank == 0:
        torch.testing.assert_close(alone, _net(torch.float32)(x))
    assert not any("forward" in m.__dict__ for m in model.modules())


@pytest.mark.slow
def test_synchronized_batchnorm_is_batchnorm_of_the_whole_batch(tmp_path):
    torch.multiprocessing.spawn(_batch_norm_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2)
