"""No timed epoch runs under the CPU tensor meter: it watches an untimed run of its own (runner.tensor_peak_run)."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from prunelora.methods.method import Method
from prunelora.metrics.tensor_memory import TensorPeak
from prunelora.objectives.retain import RetainLoss
from prunelora.runner import run_method

from .test_methods import build, context


class Watched(RetainLoss):
    """Retain cross-entropy that records, at every step, whether the tensor meter's dispatch mode is active."""

    steps_seen: list[tuple[int, bool]] = []  # (the run's epoch count, meter active)

    def steps(self, forward, feed, progress):
        for loss, samples in super().steps(forward, feed, progress):
            active = any(isinstance(mode, TensorPeak) for mode in _get_current_dispatch_mode_stack())
            Watched.steps_seen.append((progress.epochs, active))
            yield loss, samples


@pytest.fixture
def watched(monkeypatch):
    Watched.steps_seen = []
    monkeypatch.setattr(Method, "objective_class", lambda self: Watched)
    return Watched.steps_seen


@pytest.mark.parametrize("method", ["finetune", "prunelora"])
def test_the_tensor_meter_is_never_active_in_a_timed_epoch(method, digits_splits, watched):
    """The timed run (3 epochs) never sees the meter; the meter's own run (one epoch) does, and measures a peak."""
    model = build("resnet18", digits_splits)
    ctx = context("resnet18", digits_splits, epochs=[3])
    calls = []
    run = run_method(method, model, digits_splits.retain_train, ctx, seed=0, progress=False,
                     on_epoch=lambda epoch, current: calls.append(epoch) and False)
    timed = [active for epochs, active in watched if epochs == 3]
    metered = [active for epochs, active in watched if epochs == 1]
    assert calls == [1, 2, 3] and timed
    assert not any(timed), "the tensor meter's dispatch mode was active in a timed epoch"
    assert len(timed) == 3 * len(metered)  # one untimed epoch of the same steps
    assert all(metered)  # the check can fail: the meter's own epoch runs under it
    assert run.memory_kind == "cpu_tensor_peak" and run.peak_memory_mb > 0
    assert all(s.memory_kind == "cpu_tensor_peak" and s.peak_memory_mb == run.peak_memory_mb for s in run.snapshots)
    assert not _get_current_dispatch_mode_stack()


def test_the_meters_run_leaves_the_timed_run_as_it_would_be(digits_splits):
    """The untimed memory run draws from the same seed first: the timed run trains the same model with or without it."""
    model = build("resnet18", digits_splits)
    ctx = context("resnet18", digits_splits, epochs=[2])
    finals = []
    for count_tensors in (True, False):
        run = run_method("prunelora", model, digits_splits.retain_train, ctx, seed=0, progress=False,
                         count_tensors=count_tensors)
        finals.append(run.snapshots[-1].model.state_dict())
    assert finals[0].keys() == finals[1].keys()
    for key, value in finals[0].items():
        assert torch.equal(value, finals[1][key]), key
