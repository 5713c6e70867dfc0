"""The machine a run measures on: what it is, how many threads torch may use, how busy it was.

One module for the run's environment (results.json) and the benchmark's header alike: CPU model,
device, versions, the device's own matmul rate.

Timings follow the machine's load: the same digits run took 78 s on a quiet 2-core machine and
1628 s beside two other jobs (every job takes every core's threads and they oversubscribe). So a
run records the load average at its start and end and the share of the machine's CPU time that
other processes used meanwhile, and its tables say when timings are not comparable.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import UserError

# Others using more than this share of the machine's CPU time make the run's timings not comparable.
BUSY_SHARE = 0.2


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Give torch an explicit intra-op thread count (default: the cores available to the process).

    Explicit, so that several runs sharing a machine can each be given their share instead of
    all taking every core.
    """
    if threads is not None and threads <= 0:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    count = threads or available_cores()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def _machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has spent busy since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclass
class LoadProbe:
    """Start at the beginning of a run, `finish()` at its end: what else ran on the machine meanwhile."""

    threads: int
    cores: int = field(default_factory=available_cores)
    _start: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._start = {"wall": time.perf_counter(), "machine": _machine_busy_seconds(), "own": _own_cpu_seconds(),
                       "loadavg": _loadavg()}

    def finish(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._start["wall"]
        machine_end = _machine_busy_seconds()
        share = None
        if machine_end is not None and self._start["machine"] is not None and wall > 0:
            total_cores = os.cpu_count() or self.cores
            from . import distributed

            own = distributed.total(_own_cpu_seconds() - self._start["own"])  # under torchrun: every rank's
            others = (machine_end - self._start["machine"]) - own
            share = min(1.0, max(0.0, others / (wall * total_cores)))
        return {"cores": self.cores, "threads": self.threads, "loadavg_start": self._start["loadavg"],
                "loadavg_end": _loadavg(), "others_cpu_share": share,
                "busy": share is not None and share > BUSY_SHARE, "busy_threshold": BUSY_SHARE}


# -- what the machine is -------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def facts(device: torch.device) -> dict[str, Any]:
    """Versions, device, CPU and threads: recorded with every result and benchmark."""
    import peft
    import sklearn

    from . import __version__, distributed

    info: dict[str, Any] = {
        "prunelora": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "peft": peft.__version__, "sklearn": sklearn.__version__, "platform": platform.platform(),
        "device": str(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cores": available_cores(),
        "threads": torch.get_num_threads(), "world_size": distributed.world_size()}
    if device.type == "cuda":
        info["gpu"] = info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = info["cpu"]
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_sec(device: torch.device, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The device's own fp32 dense matmul rate: median of `repeats` timed `a @ b` after one warm-up.

    On the CPU the matmul uses torch's intra-op threads (torch.get_num_threads()), as training does.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device)
    b = torch.randn(size, size, generator=g).to(device)
    allow = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 rate the training step gets by default
    try:
        seconds = []
        for i in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            if i:  # the first is a warm-up
                seconds.append(time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow
    median = statistics.median(seconds)
    return {"size": size, "dtype": "float32", "repeats": repeats, "seconds": seconds,
            "flops_per_matmul": 2 * size**3, "flops_per_sec": 2 * size**3 / median,
            "threads": torch.get_num_threads()}
