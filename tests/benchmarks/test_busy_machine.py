"""The busy-machine benchmark's neighbour is what the issue describes: pinned to one core, nice 19, its own session."""
from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="affinity and sessions: Linux")


@pytest.mark.parametrize("kind", ["cpu", "memory"])
def test_the_neighbour_is_pinned_niced_and_in_a_session_of_its_own(kind):
    from benchmarks.busy_machine import neighbour

    core = max(os.sched_getaffinity(0))
    with neighbour(kind, core, settle=0.5) as process:
        assert process.poll() is None  # running
        assert os.sched_getaffinity(process.pid) == {core}
        assert os.getsid(process.pid) != os.getsid(0)  # another autogroup: nice does not reach across
        with open(f"/proc/{process.pid}/stat") as handle:
            nice = int(handle.read().rsplit(")", 1)[1].split()[16])
        assert nice == 19
    assert process.poll() is not None  # gone after the block
