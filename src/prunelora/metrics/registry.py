"""The evidence registry: what metrics/evaluate.py computes for every model, in this order.

Adding evidence is one new module defining an `Evidence` entry (its metric specs and compute
function, metrics/entry.py) and one line here; tests add one for a while with `registered(entry)`.
The order is that of the keys in every results row (and of results.csv's columns).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .accuracy import ENTRY as ACCURACY
from .attacks import ENTRY as ATTACKS
from .challenge import ENTRY as CHALLENGE
from .entry import Evidence
from .head import ENTRY as HEAD
from .probe import ENTRY as PROBE
from .relearn import ENTRY as RELEARN
from .spec import register_metric, unregister_metric
from .unseen import ENTRY as UNSEEN

EVIDENCE: dict[str, Evidence] = {}


def register(entry: Evidence) -> Evidence:
    """Add an entry (and its metric specs) after those already registered."""
    if entry.name in EVIDENCE:
        raise ValueError(f"evidence {entry.name!r} is registered twice")
    register_metric(*entry.specs)
    EVIDENCE[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an entry and the specs only it declared."""
    entry = EVIDENCE.pop(name)
    kept = {s.key for other in EVIDENCE.values() for s in other.specs}
    unregister_metric(*(s.key for s in entry.specs if s.key not in kept and s.key not in BUILT_IN_KEYS))


@contextlib.contextmanager
def registered(entry: Evidence) -> Iterator[Evidence]:
    """The entry registered while the block runs (a test's dummy metric)."""
    register(entry)
    try:
        yield entry
    finally:
        unregister(entry.name)


def evaluated_prefixes() -> tuple[str, ...]:
    """Prefixes of every key the registered evidence writes."""
    return tuple(dict.fromkeys(p for entry in EVIDENCE.values() for p in entry.written))


BUILT_IN_KEYS: frozenset[str] = frozenset()
for _entry in (ACCURACY, ATTACKS, CHALLENGE, HEAD, PROBE, RELEARN, UNSEEN):  # the order of a row's keys
    register(_entry)
BUILT_IN_KEYS = frozenset(s.key for e in EVIDENCE.values() for s in e.specs)
