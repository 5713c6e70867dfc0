"""One BLAS thread for the scikit-learn fits of the evidence.

After each op torch's OpenMP workers spin for a while before they sleep, and numpy/scipy's
OpenBLAS, on its default of one thread per core, then fights them for the same cores on problems
far too small to split: the probe's logistic regression on CIFAR-10 features (2500 x 64, 10
classes) took 3.5 s with OpenBLAS's 2 threads beside torch's and 0.12 s with one, for the same
111 L-BFGS iterations and the same model. Only BLAS is limited: torch's own threads (relearn
time, the forward passes) are not touched.
"""
from __future__ import annotations

from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    """The process's thread pools, found once: each `threadpool_limits` call scans every loaded library
    (/proc/self/maps), 5 ms a time, 2 s of a smoke run's evidence. Made at first use, when numpy, scipy and
    scikit-learn (imported by the evidence modules) have loaded their BLAS."""
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS libraries (OpenBLAS, MKL, BLIS as loaded by numpy/scipy) run on one thread."""
    return _controller().limit(limits=1, user_api="blas")
