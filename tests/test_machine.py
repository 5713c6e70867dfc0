"""The machine's load is measured, not assumed: another busy process shows up; threads are set explicitly."""
from __future__ import annotations

import pytest
import torch

from prunelora import UserError
from prunelora.machine import Clocks, LoadProbe, available_cores, set_threads


class FakeClocks:
    """A machine of 4 cores whose counters the test advances by hand: no dependence on the real load."""

    def __init__(self):
        self.now, self.machine_busy, self.own_busy = 100.0, 1000.0, 10.0

    def clocks(self) -> Clocks:
        return Clocks(machine=lambda: self.machine_busy, own=lambda: self.own_busy, wall=lambda: self.now,
                      loadavg=lambda: [0.5, 0.4, 0.3])

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own_busy += seconds * own_cores
        self.machine_busy += seconds * (own_cores + other_cores)


def test_a_busy_neighbour_makes_the_run_busy():
    fake = FakeClocks()
    probe = LoadProbe(threads=1, cores=4, clocks=fake.clocks(), total_cores=4)
    fake.run(10.0, own_cores=1.0, other_cores=2.0)  # two other cores busy all along: half the machine
    load = probe.finish()
    assert load["others_cpu_share"] == pytest.approx(0.5)
    assert load["busy"] is True and load["busy_threshold"] < 0.5
    assert load["threads"] == 1 and load["loadavg_start"] == [0.5, 0.4, 0.3]


def test_own_work_is_not_counted_as_others():
    fake = FakeClocks()
    probe = LoadProbe(threads=2, cores=4, clocks=fake.clocks(), total_cores=4)
    fake.run(8.0, own_cores=2.0, other_cores=0.2)  # this process keeps two cores busy; 0.2 of a core is others'
    load = probe.finish()
    assert load["others_cpu_share"] == pytest.approx(0.2 / 4)
    assert load["busy"] is False


def test_without_the_machine_counters_the_share_is_unknown():
    fake = FakeClocks()
    clocks = Clocks(machine=lambda: None, own=lambda: fake.own_busy, wall=lambda: fake.now, loadavg=lambda: None)
    probe = LoadProbe(threads=1, cores=2, clocks=clocks, total_cores=2)
    fake.run(1.0, own_cores=1.0, other_cores=1.0)
    load = probe.finish()
    assert load["others_cpu_share"] is None and load["busy"] is False


def test_the_real_clocks_read_this_machine():
    """The default clocks read /proc (skipped where there is none); no assertion on what others are doing."""
    load = LoadProbe(threads=1).finish()
    if load["others_cpu_share"] is None:
        pytest.skip("no /proc/stat on this platform")
    assert 0.0 <= load["others_cpu_share"] <= 1.0 and load["cores"] >= 1


def test_set_threads_defaults_to_the_available_cores_and_refuses_zero():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(None) == available_cores() == torch.get_num_threads()
        with pytest.raises(UserError, match="--threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
