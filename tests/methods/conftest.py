"""Fixtures shared by the method tests."""
from __future__ import annotations

import pytest

from prunelora.methods import resolve_recipe
from prunelora.train import fit

from ..helpers import smoke_config
from .test_methods import ARGS, FAMILY, build


@pytest.fixture(scope="module")
def originals(digits_splits):
    """An 'original' of each family, trained for one epoch so that weights and batch norms are not at init."""
    out = {}
    for name in ARGS:
        model = build(name, digits_splits)
        recipe = resolve_recipe(smoke_config().pretrain, FAMILY[name])
        fit(model, digits_splits.train, recipe, 1, seed=0, progress=False)
        out[name] = model.eval()
    return out
