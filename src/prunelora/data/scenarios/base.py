"""What every scenario is: a request kind, the fields it reads, and the checks they all share.

A scenario turns the data settings into forget requests. It reads the data config duck-typed
(`RequestFields`) so that data/ never imports config (config sits above data and calls in).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...errors import UserError
from ..ids import Named
from ..sources import RawDataset
from ..splits import check_classes, describe_class

DEFAULT_RATIO = 0.1


@dataclass(frozen=True)
class Request:
    """One request of a scenario: class-wise (its class), random (its chunk of forget_ratio) or the samples a
    request file names."""

    index: int  # 1-based
    cls: int | None  # the class this request forgets; None: a random chunk, or named samples
    ratio: float | None  # the share of the training set per random chunk
    named: Named | None = None  # the samples a request file names (data/ids.py)

    def describe(self, class_names: list[str]) -> str:
        if self.cls is not None:
            return describe_class(class_names, self.cls)
        if self.named is not None:
            return self.named.describe()
        return f"random {100 * self.ratio:g} % (chunk {self.index})"


class RequestFields(Protocol):
    """The attributes of the data config a scenario reads."""

    scenario: str
    forget_class: int | str
    forget_ratio: float | None
    requests: list[int | str] | None
    forget: list[str] | None  # request files naming samples (the named scenario, or a sequence of them)
    allow_empty_class: bool
    train_per_class: int | None  # the subset a named request must leave a sample of every class in
    holdout_per_class: int | None


@dataclass(frozen=True)
class RequestSpec:
    """RequestFields as plain values, for callers that hold them loose (requests_of)."""

    scenario: str
    forget_class: int | str
    forget_ratio: float | None
    requests: list[int | str] | None
    forget: list[str] | None = None
    allow_empty_class: bool = False
    train_per_class: int | None = None
    holdout_per_class: int | None = None


class Scenario:
    """A way of asking to forget: checks the settings before anything runs, then draws the requests.

    Subclasses set `name` and `help` and implement `draw`; `check` refuses --requests unless the
    scenario is sequential, and --forget unless it is named or sequential (override it to accept them).
    """

    name: str = ""
    help: str = ""  # one line for the CLI's --scenario help
    sequential: bool = False  # several requests, each on the model the previous one left

    def check(self, data: RequestFields) -> None:
        """Bad settings as a UserError, before the data is loaded (config's validate calls it)."""
        check_ratio(data)
        if data.requests:
            raise UserError(f"--requests goes with --scenario sequential, not {data.scenario}")
        if data.forget:
            raise UserError(f"--forget names the samples to forget, --scenario {data.scenario} chooses them: give "
                            "one (several request files in order: --scenario sequential)")

    def class_wise(self, data: RequestFields) -> bool:
        """Whether the requests forget whole classes (class-wise methods run only then)."""
        return False

    def draw(self, raw: RawDataset, data: RequestFields) -> list[Request]:
        """The requests in order, class names made indices; what only the data can refuse is a UserError."""
        raise NotImplementedError

    def requests(self, raw: RawDataset, data: RequestFields) -> list[Request]:
        """The requests, with every forgotten class checked to have training images (before any file is
        written)."""
        found = self.draw(raw, data)
        check_classes(raw, [r.cls for r in found if r.cls is not None])
        return found


def check_ratio(data: RequestFields) -> None:
    """A forget ratio, when given, is a share in (0, 1) whatever the scenario."""
    if data.forget_ratio is not None and not 0.0 < data.forget_ratio < 1.0:
        raise UserError(f"--forget-ratio must lie in (0, 1), got {data.forget_ratio} (for example --forget-ratio 0.1)")
