"""The machine's load is measured, not assumed: another busy process shows up; threads are set explicitly."""
from __future__ import annotations

import pytest
import torch

from prunelora import UserError, machine
from prunelora.machine import (
    Clocks,
    CoreClocks,
    CoreReading,
    LoadGovernor,
    LoadProbe,
    ThreadsWarning,
    available_cores,
    set_threads,
    threads_for_load,
)


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


class BusyCores:
    """This process's cores as the test says they are: `others` cores' worth of other processes' work, this process
    `own` cores' worth; sleep advances the clock. No dependence on the real machine's load."""

    def __init__(self, others: float = 0.0, own: float = 0.0):
        self.others, self.own = others, own
        self.now, self.busy, self.own_busy = 50.0, 500.0, 5.0

    def run(self, seconds: float) -> None:
        self.now += seconds
        self.busy += seconds * (self.others + self.own)
        self.own_busy += seconds * self.own

    def clocks(self) -> CoreClocks:
        return CoreClocks(cores_busy=lambda: self.busy, own=lambda: self.own_busy, wall=lambda: self.now,
                          sleep=self.run)


@pytest.fixture
def four_cores(monkeypatch):
    """A process with 4 cores, its thread state fresh; torch's threads restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(machine, "available_cores", lambda: 4)
    monkeypatch.setattr(machine, "_STATE", machine._ThreadState())
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores,others,threads", [
    (2, 0.0, 2), (2, 0.5, 2), (2, 0.6, 1), (2, 0.94, 1), (2, 1.0, 1), (2, 3.0, 1), (4, 1.0, 3), (4, 1.6, 2),
    (2, None, 2)])
def test_the_thread_count_leaves_the_cores_others_keep_busy(cores, others, threads):
    """A core counts as taken beyond half of it busy; at least one thread; no reading: every core."""
    assert threads_for_load(cores, others) == threads


def test_a_reading_counts_others_work_and_not_this_processs():
    fake = BusyCores(others=0.7, own=2.0)
    reading = CoreReading(fake.clocks()).start()
    fake.run(3.0)
    assert reading.seconds() == pytest.approx(3.0) and reading.others() == pytest.approx(0.7)


def test_without_threads_the_count_fits_the_free_cores_and_threads_win(four_cores):
    """The issue's neighbour: one core kept busy by another process. Without --threads the run takes the other three;
    with --threads the count is as asked (the load is not even read)."""
    assert set_threads(None, BusyCores(others=1.0).clocks()) == 3 == torch.get_num_threads()
    assert set_threads(None, BusyCores(others=0.0).clocks()) == 4 == torch.get_num_threads()
    never = CoreClocks(cores_busy=lambda: pytest.fail("--threads given: the load must not decide"))
    assert set_threads(2, never) == 2 == torch.get_num_threads()


def test_between_epochs_the_governor_follows_a_neighbour_that_comes_and_goes(four_cores):
    fake = BusyCores(own=4.0)
    set_threads(None, fake.clocks())
    governor = LoadGovernor(fake.clocks(), window=1.0).start()  # a fresh reading: no second probe
    assert torch.get_num_threads() == 4
    fake.others = 1.7  # a neighbour arrives: 1.7 cores' worth while this process trains
    fake.run(0.5)
    governor.epoch_end()  # half a second of training: too short a reading to act on
    assert torch.get_num_threads() == 4
    fake.run(1.0)
    governor.epoch_end()
    assert torch.get_num_threads() == 2
    fake.others, fake.own = 0.0, 2.0  # it leaves
    fake.run(2.0)
    governor.epoch_end()
    assert torch.get_num_threads() == 4 and governor.changes == [2, 4]


def test_the_governor_leaves_explicit_threads_alone(four_cores):
    fake = BusyCores(others=2.0, own=1.0)
    set_threads(1)  # --threads 1
    governor = LoadGovernor(fake.clocks(), window=1.0).start()
    fake.run(5.0)
    governor.epoch_end()
    assert torch.get_num_threads() == 1 and governor.changes == []
    machine._STATE.auto = True
    torch.set_num_threads(3)  # a Python user's own choice: not the count this module set
    governor = LoadGovernor(fake.clocks(), window=1.0).start()
    fake.run(5.0)
    governor.epoch_end()
    assert torch.get_num_threads() == 3 and governor.changes == []


def test_a_run_on_a_busy_machine_starts_on_the_free_cores(four_cores, digits_splits, monkeypatch):
    """run_method's own start reading (no set_threads before it, as prunelora.unlearn calls it)."""
    from prunelora.runner import run_method

    from .methods.test_methods import build, context

    fake = BusyCores(others=2.0)
    monkeypatch.setattr(machine, "CoreClocks", fake.clocks)
    run_method("finetune", build("resnet18", digits_splits), digits_splits.retain_train,
               context("resnet18", digits_splits, epochs=[1]), seed=0, progress=False, count_tensors=False)
    assert torch.get_num_threads() == 2


def test_the_real_reading_reads_this_machine():
    others = CoreReading().start().others()
    if others is None:
        pytest.skip("no /proc/stat on this platform")
    assert others >= 0.0


def test_set_threads_refuses_zero_and_caps_at_the_cores():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.warns(ThreadsWarning):
            assert set_threads(available_cores() + 1) == available_cores()
        with pytest.raises(UserError, match="--threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
