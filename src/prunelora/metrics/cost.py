"""Cost of a stage: wall time and peak memory (CUDA: max allocated; CPU: peak of live tensor bytes).

On the CPU the resident-set growth is kept as a second, labelled figure (`rss_growth_mb`): it is
what the process took from the OS, allocator and fixed costs included, not what the method needs.
"""
from __future__ import annotations

import gc
import os
import resource
import threading
import time

import torch

from ..machine import synchronize
from .tensor_memory import TensorPeak


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so that RSS growth measures this stage alone."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return  # not glibc: RSS growth then also counts memory freed by earlier stages


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryMeter:
    """Peak memory added while the context is open, in MB.

    On CUDA: torch.cuda.max_memory_allocated above what was allocated at entry. On CPU: the peak of
    live tensor bytes created inside the context (metrics/tensor_memory.py), the same quantity;
    and, as `rss_growth_mb()`, the resident set size sampled every 50 ms by a thread, peak minus
    the value at entry (freed heap pages are handed back to the OS first).
    """

    def __init__(self, device: torch.device, interval: float = 0.05, count_tensors: bool = True):
        self.device = device
        self.interval = interval
        self.count_tensors = count_tensors and device.type != "cuda"  # off: RSS only, no per-op callback
        self.kind = ("cuda_max_allocated" if device.type == "cuda" else
                     "cpu_tensor_peak" if self.count_tensors else "cpu_peak_rss_growth")
        self._base = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tensors: TensorPeak | None = None
        self._tensors_exited = False

    def __enter__(self) -> MemoryMeter:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            gc.collect()
            release_free_memory()
            self._base = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
            if self.count_tensors:
                self._tensors = TensorPeak("cpu")
                self._tensors.__enter__()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def peak_mb(self) -> float:
        """Peak so far (usable while the context is open, e.g. at an evaluation budget)."""
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        return self._tensors.peak_mb if self._tensors is not None else self.rss_growth_mb()

    def stop_counting_tensors(self) -> None:
        """Keep the tensor peak so far and stop the per-op bookkeeping (its cost): a training run calls this
        after its first epoch, whose allocations every later epoch repeats."""
        if self._tensors is None or not self._tensors.counting:
            return
        self._tensors.counting = False
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        if _get_current_dispatch_mode() is self._tensors:  # nothing entered above it: leave the mode now
            self._tensors.__exit__(None, None, None)
            self._tensors_exited = True

    def rss_growth_mb(self) -> float | None:
        """CPU only: peak resident-set growth so far (None on CUDA)."""
        if self.device.type == "cuda":
            return None
        self._peak = max(self._peak, _rss_bytes())
        return max(0, self._peak - self._base) / 2**20

    def __exit__(self, *exc) -> None:
        self.final_mb = self.peak_mb()
        self.final_rss_mb = self.rss_growth_mb()
        if self._tensors is not None and not self._tensors_exited:
            self._tensors.__exit__(*exc)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Stopwatch:
    """Accumulates seconds over several timed sections (device-synchronised)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._start
