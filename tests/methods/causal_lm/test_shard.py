"""FSDP asked for outside torchrun: the run goes on in one process and says so."""
from __future__ import annotations

import warnings

import pytest
from torch import nn

from prunelora.errors import SettingWarning
from prunelora.methods.causal_lm import shard


def test_fsdp_outside_torchrun_trains_the_whole_model_and_warns():
    model = nn.Linear(2, 2)
    with pytest.warns(SettingWarning, match="--parallel fsdp shards only under torchrun"):
        trained, result, sharding = shard.trained(model, "fsdp", lambda net: "fitted")
    assert trained is model and result == "fitted" and sharding == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shard.trained(model, "data", lambda net: "fitted")[2] == {}
