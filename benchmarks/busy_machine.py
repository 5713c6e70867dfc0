"""Epochs on a busy machine: python -m benchmarks.busy_machine [--width 8] [--neighbours cpu,memory] [--threads N]

Seconds per epoch of each method on the ResNet-18 (the bench's digits retain set, `prunelora bench`'s cpu
preset), first with the machine to itself, then beside each neighbour: one process pinned to the last core
at nice 19, in a session of its own, as a second terminal's job is. Across sessions the kernel's autogroups
share the CPU evenly whatever the nice value, so the neighbour really takes its core's time (started from the
same session it would yield almost all of it, and nothing shows). Neighbours: "cpu" (a one-thread torch
conv loop, the issue's `taskset -c 1 nice -n 19 env OMP_NUM_THREADS=1 prunelora reproduce --threads 1`)
and "memory" (a numpy copy of a 64 MB array, over and over).

Without --threads the runs choose their threads as prunelora does (machine.set_threads, LoadGovernor):
the cores the neighbour leaves free. `--threads 2` reproduces the issue (2 threads, one of them sharing the
neighbour's core: each operator's barrier waits for it). Prints a Markdown table: idle and busy seconds per
epoch (median of the timed epochs), their ratio and the threads used. Needs Linux and at least 2 cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from prunelora.bench.run import DEFAULT_TRAIN_PER_CLASS, bench_splits
from prunelora.config import resolve
from prunelora.data import load_dataset
from prunelora.machine import available_cores, set_threads
from prunelora.models import build_model, get_spec
from prunelora.runner import method_context, run_method

NEIGHBOURS = {
    "cpu": ("import torch\ntorch.set_num_threads(1)\nx, w = torch.randn(64, 16, 16, 16), torch.randn(16, 16, 3, 3)\n"
            "while True:\n    torch.nn.functional.conv2d(x, w, padding=1).sum()\n"),
    "memory": ("import numpy as np\na = np.ones(16 * 2**20, dtype=np.float32)\nb = np.empty_like(a)\n"
               "while True:\n    np.copyto(b, a)\n"),
}


@contextmanager
def neighbour(kind: str, core: int, settle: float = 2.0) -> Iterator[subprocess.Popen]:
    """The neighbour running on `core` at nice 19 in a session of its own, for the block's duration (after
    `settle` seconds, imported and running)."""

    def pin() -> None:
        os.sched_setaffinity(0, {core})
        os.nice(19)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", NEIGHBOURS[kind]], preexec_fn=pin, start_new_session=True,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        yield process
    finally:
        process.kill()
        process.wait()


def epochs_of(method: str, mode: str, width: int, epochs: int, threads: int | None) -> tuple[float, int]:
    """Median seconds per timed epoch (the first is a warm-up) and the threads it ran on."""
    config = resolve(overrides={"models": ["resnet18"]})
    config = dataclasses.replace(config, unlearn=dataclasses.replace(config.unlearn, prune_mode=mode,
                                                                     epochs=[epochs]))
    splits = bench_splits(load_dataset("digits"), config, DEFAULT_TRAIN_PER_CLASS, 0, torch.device("cpu"))
    channels, size, _ = splits.image_shape
    args = {"width": width}
    spec = get_spec("resnet18", args)

    def fresh() -> torch.nn.Module:
        return build_model("resnet18", splits.num_classes, channels, size, splits.mean, splits.std, args)

    torch.manual_seed(0)
    set_threads(threads)  # as a command starts: --threads, else the free cores
    ctx = method_context(config, spec.plan, spec.family, fresh, splits.retain_train)
    run = run_method(method, fresh(), splits.retain_train, ctx, seed=0, progress=False, epochs=epochs,
                     snapshots=False, count_tensors=False)
    return statistics.median(run.history.epoch_seconds[1:]), torch.get_num_threads()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--methods", default="finetune,prune-finetune,lora,prunelora")
    parser.add_argument("--prune-mode", default="remove")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, the first untimed")
    parser.add_argument("--neighbours", default="cpu,memory")
    parser.add_argument("--threads", type=int, default=None, help="fixed torch threads (default: prunelora's choice)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a terminated benchmark still stops its neighbour
    if available_cores() < 2:
        sys.exit("needs at least 2 cores (one for the neighbour)")
    core = max(os.sched_getaffinity(0))
    methods, kinds = args.methods.split(","), args.neighbours.split(",")
    idle = {m: epochs_of(m, args.prune_mode, args.width, args.epochs, args.threads) for m in methods}
    busy: dict[str, dict[str, tuple[float, int]]] = {}
    for kind in kinds:
        with neighbour(kind, core):
            busy[kind] = {m: epochs_of(m, args.prune_mode, args.width, args.epochs, args.threads) for m in methods}
    print(f"ResNet-18 width {args.width}, prune mode {args.prune_mode}, threads "
          f"{args.threads or 'chosen by prunelora'}; neighbour on core {core}, nice 19, its own session\n")
    header = "| method | idle s/epoch (threads) | " + " | ".join(
        f"beside {k} s/epoch (threads) | x idle" for k in kinds) + " |"
    print(header)
    print("|---|---:|" + "---:|---:|" * len(kinds))
    for m in methods:
        cells = [f"{idle[m][0]:.3f} ({idle[m][1]})"]
        for kind in kinds:
            sec, threads = busy[kind][m]
            cells += [f"{sec:.3f} ({threads})", f"{sec / idle[m][0]:.2f}"]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
