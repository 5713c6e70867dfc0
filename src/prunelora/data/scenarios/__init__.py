"""Forget requests by scenario: the registry, and the splits a history of requests gives.

Adding a scenario is one file (a Scenario subclass: data/scenarios/base.py) plus one `register` line
below. Config checks a request with `get_scenario(data.scenario).check(data)`; the CLI takes the
choices and their help from SCENARIOS.
"""
from __future__ import annotations

from ...errors import UserError
from ..sources import RawDataset
from .base import DEFAULT_RATIO, Request, RequestFields, RequestSpec, Scenario
from .named import NamedSamples, named_positions
from .one_class import OneClass
from .partition import random_order, request_splits
from .random_share import RandomShare
from .sequential import Sequential

SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario under its name (the --scenario value); returns it."""
    SCENARIOS[scenario.name] = scenario
    return scenario


register(OneClass())
register(RandomShare())
register(Sequential())
register(NamedSamples())


def get_scenario(name: str) -> Scenario:
    """The registered scenario called `name`; an unknown one is a UserError naming the choices."""
    if name not in SCENARIOS:
        raise UserError(f"unknown scenario '{name}' (choose from: {', '.join(SCENARIOS)})")
    return SCENARIOS[name]


def requests_of(raw: RawDataset, scenario: str, forget_class: int | str, forget_ratio: float | None,
                requests: list[int | str] | None, **named) -> list[Request]:
    """The scenario's requests in order; class names become indices; request files are read and matched; bad
    requests, and classes without training images (splits.check_classes), are a UserError: called right after
    the data is loaded, before any file is written.

    named: RequestSpec's fields for request files (forget, allow_empty_class, train_per_class, holdout_per_class).
    """
    spec = RequestSpec(scenario, forget_class, forget_ratio, requests, **named)
    return get_scenario(scenario).requests(raw, spec)


__all__ = ["DEFAULT_RATIO", "SCENARIOS", "Request", "RequestFields", "RequestSpec", "Scenario", "get_scenario",
           "named_positions", "random_order", "register", "request_splits", "requests_of"]
