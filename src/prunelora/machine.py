"""The machine a run measures on: what it is, how many threads torch may use, how busy it was.

One module for the run's environment (results.json) and the benchmark's header alike: CPU model,
device, versions, the device's own matmul rate.

Timings follow the machine's load: the same digits run took 78 s on a quiet 2-core machine and
1628 s beside two other jobs (every job takes every core's threads and they oversubscribe). So a
run records the load average at its start and end and the share of the machine's CPU time that
other processes used meanwhile, and its tables say when timings are not comparable.

Torch's threads meet at a barrier after every parallel operator: one thread sharing its core with
another process waits for its turn there, operator after operator. Beside a one-thread neighbour
pinned to one of 2 cores (started in its own session, where `nice` does not reach across the
scheduler's autogroups) a width-8 ResNet epoch went from 0.49 s to 18.8 s (Finetune) and from 0.66 s
to 50 s (PruneLoRA) on 2 threads, and took 0.66 s and 0.77 s on one. So without --threads the count
fits the cores the other processes leave free (`free_threads`), read before the run and again
between epochs (`LoadGovernor`); --threads always wins.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from . import distributed
from .errors import UserError
from .version import __version__

# Others using more than this share of the machine's CPU time make the run's timings not comparable.
BUSY_SHARE = 0.2


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ThreadsWarning(UserWarning):
    """More threads were asked for than the process has cores: the count was capped."""


# A core counts as taken when other processes kept more than this share of it busy. Measured on 2 cores: a
# one-core neighbour started under setsid read 1.00 core with this process idle and 0.94 while it trained on
# 2 threads (the autogroups share the core); started as this process's child at nice 19 it read 0.03-0.05 while this
# process trained (it yields) and 1.00 with it idle. Half a core keeps brief bursts (a short command) from counting.
TAKEN_SHARE = 0.5
PROBE_SEC = 0.2  # the start reading's window: twenty of the kernel's 10 ms ticks per core
GOVERNOR_WINDOW_SEC = 1.0  # between epochs, threads change on readings at least this long


def _cores_busy_seconds(cores: frozenset[int] | None) -> float | None:
    """CPU seconds the given cores (all where None) have spent busy since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as handle:
            lines = [line.split() for line in handle if line.startswith("cpu")]
    except OSError:
        return None
    total = 0.0
    for fields in lines:
        name = fields[0]
        if name == "cpu" or (cores is not None and int(name[3:]) not in cores):
            continue
        ticks = [int(v) for v in fields[1:9]]
        total += sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return total / os.sysconf("SC_CLK_TCK")


def _affinity() -> frozenset[int] | None:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class CoreClocks:
    """Where the thread choice reads the load: busy seconds of this process's cores, this process's CPU
    seconds, the wall clock and a sleep. The defaults read the operating system; tests pass their own."""

    cores_busy: Callable[[], float | None] = lambda: _cores_busy_seconds(_affinity())
    own: Callable[[], float] = lambda: _own_cpu_seconds()
    wall: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep


@dataclass
class CoreReading:
    """Others' use of this process's cores since `start()`: cores' worth of CPU time per wall second."""

    clocks: CoreClocks = field(default_factory=CoreClocks)
    _start: tuple[float | None, float, float] | None = None

    def start(self) -> CoreReading:
        c = self.clocks
        self._start = (c.cores_busy(), c.own(), c.wall())
        return self

    def seconds(self) -> float:
        return self.clocks.wall() - self._start[2] if self._start else 0.0

    def others(self) -> float | None:
        """Cores' worth of others' work since start (None without /proc/stat or time elapsed)."""
        c = self.clocks
        busy, own, wall = c.cores_busy(), c.own(), c.wall()
        if self._start is None or busy is None or self._start[0] is None or wall <= self._start[2]:
            return None
        # this process's own CPU time (under torchrun the other ranks count as others: they share the cores)
        return max(0.0, (busy - self._start[0] - (own - self._start[1])) / (wall - self._start[2]))


def threads_for_load(cores: int, others: float | None) -> int:
    """The cores others leave free, at least 1: a core counts as taken beyond TAKEN_SHARE of it busy (0.6 of a core
    takes one, 1.6 two). None (no reading): every core."""
    if others is None:
        return cores
    taken = math.ceil(others - TAKEN_SHARE) if others > TAKEN_SHARE else 0
    return max(1, cores - taken)


def others_now(clocks: CoreClocks | None = None, window: float = PROBE_SEC) -> float | None:
    """Others' use of this process's cores over `window` seconds from now (this process idle meanwhile)."""
    reading = CoreReading(clocks or CoreClocks()).start()
    reading.clocks.sleep(window)
    return reading.others()


@dataclass
class _ThreadState:
    """Whether the thread count is this module's to choose (no --threads given), and what it last chose."""

    auto: bool = True
    chosen: int | None = None
    read_at: float | None = None  # wall clock of the last load reading


_STATE = _ThreadState()


def free_threads(clocks: CoreClocks | None = None) -> int:
    """The cores available to this process that others leave free (a reading of PROBE_SEC; one core: no reading)."""
    cores = available_cores()
    if cores == 1:
        return 1
    count = threads_for_load(cores, others_now(clocks))
    _STATE.read_at = (clocks or CoreClocks()).wall()
    return count


def set_threads(threads: int | None, clocks: CoreClocks | None = None) -> int:
    """Give torch an explicit intra-op thread count: `threads`, else the cores others leave free (free_threads).

    Explicit, so that several runs sharing a machine can each be given their share instead of
    all taking every core. Never more than the cores available (a ThreadsWarning says so). Without
    `threads` the count follows the load (LoadGovernor between epochs); with it, it stays.
    clocks: where the load is read (tests simulate a busy machine).
    """
    if threads is not None and threads <= 0:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    cores = available_cores()
    if threads is not None and threads > cores:  # more only oversubscribes (10000 asked started 20 004 threads)
        warnings.warn(f"--threads {threads} is more than the {cores} cores available to this process: using {cores}",
                      ThreadsWarning, stacklevel=2)
        threads = cores
    count = threads or free_threads(clocks)
    _STATE.auto, _STATE.chosen = threads is None, count
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def threads_automatic() -> bool:
    """Whether this module may change the thread count: no --threads given, and torch's count is the one it set
    (or, never set, every core: a Python user's own torch.set_num_threads is left alone)."""
    expected = _STATE.chosen if _STATE.chosen is not None else available_cores()
    return _STATE.auto and torch.get_num_threads() == expected


class LoadGovernor:
    """Fits the threads to the free cores while a run trains: `start()` before it (a reading of its own unless
    one was taken in the last `fresh_sec`), `epoch_end()` after each epoch (outside the timed region). Readings
    span at least GOVERNOR_WINDOW_SEC of training, whose own threads are not counted as others'. Does nothing
    where the threads are explicit (threads_automatic)."""

    def __init__(self, clocks: CoreClocks | None = None, window: float = GOVERNOR_WINDOW_SEC,
                 fresh_sec: float = 30.0) -> None:
        self.clocks = clocks or CoreClocks()
        self.window, self.fresh_sec = window, fresh_sec
        self.reading = CoreReading(self.clocks)
        self.changes: list[int] = []  # thread counts set, in order

    def start(self) -> LoadGovernor:
        if not threads_automatic():
            return self
        stale = _STATE.read_at is None or self.clocks.wall() - _STATE.read_at > self.fresh_sec
        if stale:
            self._apply(free_threads(self.clocks))
        self.reading.start()
        return self

    def epoch_end(self) -> None:
        if not threads_automatic() or self.reading.seconds() < self.window:
            return
        others = self.reading.others()
        _STATE.read_at = self.clocks.wall()
        if others is not None:
            self._apply(threads_for_load(available_cores(), others))
        self.reading.start()

    def _apply(self, count: int) -> None:
        _STATE.chosen = count
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
            self.changes.append(count)


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


@dataclass(frozen=True)
class Clocks:
    """Where a LoadProbe reads time: the machine's busy CPU seconds, this process's, the wall clock and the
    load average. The defaults read the operating system; tests pass their own to check the arithmetic."""

    machine: Callable[[], float | None] = _machine_busy_seconds
    own: Callable[[], float] = _own_cpu_seconds
    wall: Callable[[], float] = time.perf_counter
    loadavg: Callable[[], list[float] | None] = _loadavg


@dataclass
class LoadProbe:
    """Start at the beginning of a run, `finish()` at its end: what else ran on the machine meanwhile."""

    threads: int
    cores: int = field(default_factory=available_cores)
    clocks: Clocks = field(default_factory=Clocks)
    total_cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    _start: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.clocks
        self._start = {"wall": c.wall(), "machine": c.machine(), "own": c.own(), "loadavg": c.loadavg()}

    def finish(self) -> dict[str, Any]:
        c = self.clocks
        wall = c.wall() - self._start["wall"]
        machine_end = c.machine()
        share = None
        if machine_end is not None and self._start["machine"] is not None and wall > 0:
            own = distributed.total(c.own() - self._start["own"])  # under torchrun: every rank's
            others = (machine_end - self._start["machine"]) - own
            share = min(1.0, max(0.0, others / (wall * self.total_cores)))
        return {"cores": self.cores, "threads": self.threads, "threads_end": torch.get_num_threads(),
                "loadavg_start": self._start["loadavg"],
                "loadavg_end": c.loadavg(), "others_cpu_share": share,
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


def _kernels(size: int, device: torch.device) -> dict[str, tuple[Callable[[], Any], int]]:
    """The fp32 kernels whose best rate is the device's peak: name -> (call, FLOPs per call). Squares of two
    sizes, transposed operands, a tall-skinny product and a 3x3 convolution (training's ResNets run those,
    and they beat a square matmul on some CPUs: a 2048 matmul alone read 149.6 % MFU for a ResNet-18)."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    half, quarter = max(8, size // 2), max(4, size // 4)
    a, b, c = rand(size, size), rand(size, size), rand(half, half)
    tall, skinny = rand(2 * size, quarter), rand(quarter, size)
    channels = min(64, max(8, size // 32))
    image, weight = rand(32, channels, 32, 32), rand(channels, channels, 3, 3)
    return {
        f"matmul {size}x{size}": (lambda: a @ b, 2 * size**3),
        f"matmul {half}x{half}": (lambda: c @ c, 2 * half**3),
        f"matmul {size}x{size}, transposed operands": (lambda: a.t() @ b.t(), 2 * size**3),
        f"matmul {2 * size}x{quarter} @ {quarter}x{size}": (lambda: tall @ skinny, 2 * 2 * size * quarter * size),
        f"conv2d 3x3, {channels} channels, 32 x 32 x 32": (
            lambda: torch.nn.functional.conv2d(image, weight, padding=1), 2 * 32 * channels * 32 * 32 * channels * 9),
    }


KERNEL_BUDGET_SEC = 0.4  # timed seconds per kernel, after which its repeats stop (the whole peak: about 2 s)


def _timed_calls(call: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """Seconds of up to `repeats` timed calls after one warm-up (fewer once KERNEL_BUDGET_SEC is spent)."""
    seconds: list[float] = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        if i:  # the first is a warm-up
            seconds.append(time.perf_counter() - start)
            if sum(seconds) > KERNEL_BUDGET_SEC:
                break
    return seconds


def matmul_flops_per_sec(device: torch.device, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The device's measured fp32 peak: the best median rate of several kernels (_kernels), each timed up to
    `repeats` times after a warm-up. `kernel` names the winner, `kernels` every rate (FLOP/s); `seconds` and
    `flops_per_matmul` are the winner's. About 2-3 s at size 2048 on 2 CPU cores.

    On the CPU the kernels use torch's intra-op threads (torch.get_num_threads()), as training does.
    """
    allow = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 rate the training step gets by default
    try:
        timed = {name: (flops, _timed_calls(call, device, repeats))
                 for name, (call, flops) in _kernels(size, device).items()}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow
    rates = {name: flops / statistics.median(seconds) for name, (flops, seconds) in timed.items()}
    best = max(rates, key=rates.__getitem__)
    return {"size": size, "dtype": "float32", "repeats": repeats, "kernel": best, "kernels": rates,
            "seconds": timed[best][1], "flops_per_matmul": timed[best][0], "flops_per_sec": rates[best],
            "threads": torch.get_num_threads()}


def select_device(name: str) -> torch.device:
    """The device a run computes on: "auto" takes CUDA where there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (choose auto, cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device '{name}' (choose auto, cpu or cuda)")
    return device
