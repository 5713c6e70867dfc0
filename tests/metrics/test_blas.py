"""The evidence's scikit-learn fits run on one BLAS thread, and torch's threads are left alone."""
import torch
from threadpoolctl import threadpool_info

from prunelora.metrics.blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_blas_thread_inside_and_the_setting_restored_after():
    import numpy as np

    np.dot(np.ones((4, 4)), np.ones((4, 4)))  # BLAS is loaded
    before, torch_threads = _blas_threads(), torch.get_num_threads()
    with one_blas_thread():
        assert _blas_threads() and all(n == 1 for n in _blas_threads())
        assert torch.get_num_threads() == torch_threads
    assert _blas_threads() == before
