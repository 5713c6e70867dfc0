"""The named scenario: forget the training samples a request file names (--forget FILE).

Not class-wise: the forget set is exactly the named samples (which the training subset always
holds: data/splits.py), and every test image measures TA. A sequence of request files is the
sequential scenario's (--scenario sequential --forget a.txt,b.txt), drawn by `named_requests`.
"""
from __future__ import annotations

import numpy as np

from ...errors import UserError, shown
from ..ids import IdIndex, check_kept, named_samples
from ..sources import RawDataset
from .base import Request, RequestFields, Scenario, check_ratio


class NamedSamples(Scenario):
    """Forget the samples one request file names (data/ids.py says what an id is)."""

    name = "named"
    help = "the training samples a request file names (--forget FILE)"

    def check(self, data: RequestFields) -> None:
        check_ratio(data)
        if not data.forget:
            raise UserError("--scenario named needs --forget FILE: a request file listing the ids of the samples "
                            "to forget, one a line")
        check_named(data)
        if len(data.forget) > 1:
            raise UserError(f"--forget gives {len(data.forget)} request files: several are requests in order, with "
                            "--scenario sequential")

    def draw(self, raw: RawDataset, data: RequestFields) -> list[Request]:
        return named_requests(raw, data)


def check_named(data: RequestFields) -> None:
    """What cannot go with request files, whatever the scenario that reads them."""
    if data.forget_ratio is not None:
        raise UserError("--forget names the samples to forget and --forget-ratio draws them at random: give one")
    if data.requests:
        raise UserError("--forget names the requests (several files: --scenario sequential --forget a.txt,b.txt): "
                        "leave out --requests")


def named_requests(raw: RawDataset, data: RequestFields) -> list[Request]:
    """One request per file of --forget, in order; a sample named by two files, and a class left with no
    training sample to keep once every file is forgotten (unless --allow-empty-class), are UserErrors."""
    index = IdIndex(raw)
    requests, owner = [], {}
    for k, source in enumerate(data.forget or [], start=1):
        named = named_samples(index, source)
        twice = next((p for p in named.positions if p in owner), None)
        if twice is not None:
            raise UserError(f"{shown(owner[twice])} and {shown(source)} both name {shown(raw.train_ids[twice])}: each "
                            "sample is forgotten once (remove it from one of them)")
        owner.update(dict.fromkeys(named.positions, source))
        requests.append(Request(k, None, None, named))
    where = data.forget[0] if len(requests) == 1 else "the request files together"
    check_kept(raw, np.array(sorted(owner), dtype=np.int64), data.train_per_class, data.holdout_per_class,
               data.allow_empty_class, where)
    return requests


def named_positions(requests: list[Request]) -> np.ndarray | None:
    """Every training position the requests name (ascending), or None where none names samples."""
    found = sorted({p for r in requests if r.named is not None for p in r.named.positions})
    return np.array(found, dtype=np.int64) if found else None
