"""The machine's load is measured, not assumed: another busy process shows up; threads are set explicitly."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from prunelora import UserError
from prunelora.machine import LoadProbe, available_cores, set_threads


def test_a_busy_neighbour_makes_the_run_busy():
    probe = LoadProbe(threads=1)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(2.0)
        load = probe.finish()  # before the spinner is reaped, so its CPU time is another process's
    finally:
        spinner.kill()
        spinner.wait()
    if load["others_cpu_share"] is None:
        pytest.skip("no /proc/stat on this platform")
    # One spinning core out of the machine's: at least a share of 1/cores, minus scheduling noise.
    assert load["others_cpu_share"] >= 0.5 / load["cores"] - 0.05
    assert load["busy"] == (load["others_cpu_share"] > load["busy_threshold"])
    assert load["threads"] == 1 and len(load["loadavg_start"]) == 3


def test_own_work_is_not_counted_as_others():
    probe = LoadProbe(threads=1)
    end = time.perf_counter() + 1.0
    x = 0
    while time.perf_counter() < end:  # this process keeps one core busy
        x += 1
    load = probe.finish()
    if load["others_cpu_share"] is None:
        pytest.skip("no /proc/stat on this platform")
    assert load["others_cpu_share"] < 0.5 / load["cores"]


def test_set_threads_defaults_to_the_available_cores_and_refuses_zero():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(None) == available_cores() == torch.get_num_threads()
        with pytest.raises(UserError, match="--threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
