"""The sequential scenario: requests one after another, each on the model the previous one left.

The requests are classes in order (--requests 3,5,7), with --forget-ratio a number of random
chunks (--requests 3): chunk k is the k-th slice of one seeded permutation, so they never overlap;
or request files in order (--forget a.txt,b.txt): request k forgets the samples file k names.
"""
from __future__ import annotations

from ...errors import UserError
from ..sources import RawDataset
from ..splits import class_index
from .base import Request, RequestFields, Scenario, check_ratio
from .named import check_named, named_requests


class Sequential(Scenario):
    """A sequence of class requests, of random chunks of --forget-ratio each, or of request files."""

    name = "sequential"
    help = "a sequence of requests (--requests, or request files: --forget a.txt,b.txt)"
    sequential = True

    def check(self, data: RequestFields) -> None:
        check_ratio(data)
        if data.forget:
            check_named(data)
            return
        if not data.requests:
            raise UserError("--scenario sequential needs --requests: classes in order (3,5,7), or a number of "
                            "random chunks with --forget-ratio (--requests 3 --forget-ratio 0.1); or request "
                            "files in order with --forget a.txt,b.txt")
        if data.forget_ratio is not None:
            if len(data.requests) != 1 or not isinstance(data.requests[0], int) or data.requests[0] < 1:
                raise UserError(f"with --forget-ratio, --requests is the number of random chunks (for example "
                                f"--requests 3), got {','.join(map(str, data.requests))}")
            if data.requests[0] * data.forget_ratio >= 1.0:
                raise UserError(f"{data.requests[0]} requests of {data.forget_ratio} each would forget the whole "
                                "training set (lower --requests or --forget-ratio)")
        elif len(set(data.requests)) != len(data.requests):
            raise UserError(f"--requests repeats a class: {','.join(map(str, data.requests))} (each class is "
                            "forgotten once)")

    def class_wise(self, data: RequestFields) -> bool:
        return data.forget_ratio is None and not data.forget

    def draw(self, raw: RawDataset, data: RequestFields) -> list[Request]:
        if data.forget:
            return named_requests(raw, data)
        if data.forget_ratio is not None:
            return [Request(k, None, data.forget_ratio) for k in range(1, int(data.requests[0]) + 1)]
        classes = [class_index(raw, c) for c in data.requests]
        if len(set(classes)) != len(classes):
            raise UserError(f"--requests names a class twice: {','.join(map(str, data.requests))} (each class is "
                            "forgotten once)")
        if len(classes) >= raw.num_classes:
            raise UserError(f"--requests would forget every class of {raw.name}: leave at least one")
        return [Request(k, c, None) for k, c in enumerate(classes, start=1)]
