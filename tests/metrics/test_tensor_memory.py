"""The CPU tensor-peak meter counts live tensor bytes as CUDA's max_memory_allocated does."""
import pytest
import torch
from torch import nn

from prunelora.metrics.cost import MemoryMeter
from prunelora.metrics.tensor_memory import TensorPeak

F32 = 4


def test_scripted_allocation_pattern_gives_the_known_peak():
    with TensorPeak() as meter:
        a = torch.empty(1000)  # 4000 B live
        b = torch.empty(2000)  # 12000
        del a  # 8000
        c = torch.empty(500, dtype=torch.float64)  # 12000
        view = b[:10]
        b.add_(1.0)  # a view and an in-place op allocate nothing
        d = torch.empty(3000)  # 24000: the peak
        del b, view, c  # 12000
        e = torch.empty(2500)  # 22000, below the peak
        del d, e
    assert meter.peak == 24000
    assert meter.live == 0


def test_storages_from_before_are_not_counted_and_freeing_them_changes_nothing():
    weights = torch.ones(10_000)
    with TensorPeak() as meter:
        x = weights * 2  # one new 40000 B tensor
        del weights
    assert meter.peak == 10_000 * F32 and meter.live == 10_000 * F32
    del x


def test_views_of_storages_from_before_allocate_nothing():
    data = torch.zeros(4500, 3, 32, 32, dtype=torch.uint8)  # a data set held before the meter opens
    index = torch.tensor([1, 2, 3])
    with TensorPeak() as meter:
        first = data[:2]  # slices, selects and reshapes share the data's storage
        rows = data.view(4500, -1)[10:20]
        rows.add_(1)  # in place on the data: nothing new either
        picked = data[index]  # an index gathers a copy: 3 images
    assert meter.peak == 3 * 3 * 32 * 32
    del first, rows, picked


def test_training_step_counts_activations_gradients_and_optimizer_state():
    torch.manual_seed(0)
    model = nn.Linear(256, 128)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(64, 256)
    with TensorPeak() as meter:
        loss = model(x).square().sum()
        after_forward = meter.live  # the output, kept for square's backward, and the loss
        loss.backward()
        optimizer.step()
    params = sum(p.numel() for p in model.parameters()) * F32
    output = 64 * 128 * F32
    assert after_forward == output + F32
    # the gradients plus the momentum buffers, which all outlive the step (the output is freed by then)
    assert meter.peak >= 2 * params
    assert meter.live >= 2 * params  # .grad and momentum are still alive


@pytest.mark.slow
def test_memory_meter_on_cpu_reports_tensor_peak_and_rss_growth():
    with MemoryMeter(torch.device("cpu")) as meter:
        kept = torch.zeros(2**20)  # 4 MiB
    assert meter.kind == "cpu_tensor_peak"
    assert abs(meter.final_mb - 4.0) < 1e-6
    assert meter.final_rss_mb is not None and meter.final_rss_mb >= 0
    with MemoryMeter(torch.device("cpu"), count_tensors=False) as rss_only:
        del kept
    assert rss_only.kind == "cpu_peak_rss_growth" and rss_only.final_mb == rss_only.final_rss_mb


def test_stop_counting_keeps_the_peak_and_leaves_the_mode():
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    with MemoryMeter(torch.device("cpu")) as meter:
        first = torch.zeros(2**18)  # 1 MiB
        meter.stop_counting_tensors()
        assert _get_current_dispatch_mode() is None  # no per-op bookkeeping from here on
        later = torch.zeros(2**20)  # 4 MiB, not counted
    assert abs(meter.final_mb - 1.0) < 1e-6
    del first, later
