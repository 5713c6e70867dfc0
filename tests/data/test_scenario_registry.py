"""The scenario registry: a new scenario is one class and one `register` line; each scenario's checks and flags."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from prunelora.data.raw import RawDataset
from prunelora.data.scenarios import SCENARIOS, Request, Scenario, get_scenario, register, request_splits, requests_of
from prunelora.errors import UserError


class LastClass(Scenario):
    """A scenario made up for the test: forget the dataset's last class, whatever --forget-class says."""

    name = "last"
    help = "the last class"

    def check(self, data) -> None:
        if data.forget_ratio is not None:
            raise UserError("--forget-ratio goes with --scenario random or sequential, not last")
        super().check(data)

    def class_wise(self, data) -> bool:
        return True

    def draw(self, raw: RawDataset, data) -> list[Request]:
        return [Request(1, raw.num_classes - 1, None)]


@pytest.fixture
def last_class():
    scenario = register(LastClass())  # the one registry line a new scenario needs
    yield scenario
    del SCENARIOS["last"]


def fields(scenario: str, forget_ratio: float | None = None, requests: list | None = None, forget_class=3,
           forget: list | None = None):
    """A stand-in for DataConfig: scenarios read these attributes and nothing else."""
    return SimpleNamespace(scenario=scenario, forget_class=forget_class, forget_ratio=forget_ratio, requests=requests,
                           forget=forget, allow_empty_class=False, train_per_class=None, holdout_per_class=None)


def test_the_built_in_scenarios_are_registered_in_order():
    assert list(SCENARIOS) == ["class", "random", "sequential", "named"]
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name and get_scenario(name) is scenario
        assert scenario.help and "\n" not in scenario.help


def test_an_unknown_scenario_names_the_choices():
    with pytest.raises(UserError) as caught:
        get_scenario("nope")
    assert str(caught.value) == "unknown scenario 'nope' (choose from: class, random, sequential, named)"
    with pytest.raises(UserError, match="unknown scenario 'nope'"):
        requests_of(None, "nope", 3, None, None)


def test_a_registered_scenario_draws_splits_and_leaves_no_trace(digits_raw, last_class):
    assert get_scenario("last") is last_class and list(SCENARIOS)[-1] == "last"
    with pytest.raises(UserError) as caught:
        get_scenario("nope")
    assert str(caught.value).endswith("(choose from: class, random, sequential, named, last)")
    last_class.check(fields("last"))
    with pytest.raises(UserError, match="not last"):
        last_class.check(fields("last", forget_ratio=0.1))
    history = requests_of(digits_raw, "last", 3, None, None)
    assert history == [Request(1, 9, None)]
    s = request_splits(digits_raw, history, 20, 10, 0, "cpu", "last")
    assert s.scenario == "last" and s.request == 1 and s.forget_class == 9 and s.forget_classes == [9]
    assert len(s.forget_train) == 20 and set(s.forget_train.labels.tolist()) == {9}
    assert len(s.retain_train) == 180 and 9 not in set(s.retain_train.labels.tolist())
    assert len(s.test_forget) == 10 and len(s.test_retain) == 90
    assert last_class.class_wise(fields("last")) is True and last_class.sequential is False


def test_the_registry_is_back_to_the_built_ins_after_the_dummy():
    assert list(SCENARIOS) == ["class", "random", "sequential", "named"]


def test_requests_of_checks_that_every_forgotten_class_has_training_images():
    empty = RawDataset("two", np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 0]), np.zeros((0, 1, 2, 2), np.uint8),
                       np.array([], dtype=np.int64), ["a", "b", "c"], (0.5,), (0.5,))
    with pytest.raises(UserError, match="class 1 \\(b\\) has no training images in two"):
        requests_of(empty, "class", 1, None, None)


@pytest.mark.parametrize("scenario,ratio,requests,message", [
    ("class", 1.5, None, "--forget-ratio must lie in (0, 1), got 1.5 (for example --forget-ratio 0.1)"),
    ("random", 0.0, None, "--forget-ratio must lie in (0, 1), got 0.0 (for example --forget-ratio 0.1)"),
    ("sequential", 1.0, [3], "--forget-ratio must lie in (0, 1), got 1.0 (for example --forget-ratio 0.1)"),
    ("class", None, [3, 5], "--requests goes with --scenario sequential, not class"),
    ("random", 0.1, [3], "--requests goes with --scenario sequential, not random"),
    ("sequential", None, None, "--scenario sequential needs --requests: classes in order (3,5,7), or a number of "
                               "random chunks with --forget-ratio (--requests 3 --forget-ratio 0.1); or request "
                               "files in order with --forget a.txt,b.txt"),
    ("sequential", None, [], "--scenario sequential needs --requests: classes in order (3,5,7), or a number of "
                             "random chunks with --forget-ratio (--requests 3 --forget-ratio 0.1); or request "
                             "files in order with --forget a.txt,b.txt"),
    ("sequential", 0.1, [2, 3], "with --forget-ratio, --requests is the number of random chunks (for example "
                                "--requests 3), got 2,3"),
    ("sequential", 0.1, ["cat"], "with --forget-ratio, --requests is the number of random chunks (for example "
                                 "--requests 3), got cat"),
    ("sequential", 0.1, [0], "with --forget-ratio, --requests is the number of random chunks (for example "
                             "--requests 3), got 0"),
    ("sequential", 0.5, [2], "2 requests of 0.5 each would forget the whole training set (lower --requests or "
                             "--forget-ratio)"),
    ("sequential", None, [3, 5, 3], "--requests repeats a class: 3,5,3 (each class is forgotten once)"),
])
def test_each_scenario_refuses_bad_settings_with_its_message(scenario, ratio, requests, message):
    with pytest.raises(UserError) as caught:
        get_scenario(scenario).check(fields(scenario, ratio, requests))
    assert str(caught.value) == message


@pytest.mark.parametrize("scenario,ratio,requests", [
    ("class", None, None), ("random", None, None), ("random", 0.25, None), ("sequential", None, [3, 5, 7]),
    ("sequential", None, ["cat", "dog"]), ("sequential", 0.1, [3]), ("sequential", 0.3, [3]),
])
def test_good_settings_pass_the_check(scenario, ratio, requests):
    assert get_scenario(scenario).check(fields(scenario, ratio, requests)) is None


@pytest.mark.parametrize("scenario,ratio,class_wise,sequential", [
    ("class", None, True, False), ("random", 0.1, False, False), ("random", None, False, False),
    ("sequential", None, True, True), ("sequential", 0.1, False, True),
])
def test_class_wise_and_sequential_flags(scenario, ratio, class_wise, sequential):
    found = get_scenario(scenario)
    assert found.class_wise(fields(scenario, ratio)) is class_wise and found.sequential is sequential


def test_request_files_are_neither_class_wise_nor_sequential_unless_a_sequence():
    named, sequence = get_scenario("named"), get_scenario("sequential")
    assert named.class_wise(fields("named", forget=["r.txt"])) is False and named.sequential is False
    assert sequence.class_wise(fields("sequential", forget=["a.txt", "b.txt"])) is False
    assert named.check(fields("named", forget=["r.txt"])) is None
    assert sequence.check(fields("sequential", forget=["a.txt", "b.txt"])) is None


def test_each_scenario_draws_its_requests(digits_raw):
    assert get_scenario("class").requests(digits_raw, fields("class", forget_class="4")) == [Request(1, 4, None)]
    assert get_scenario("random").requests(digits_raw, fields("random")) == [Request(1, None, 0.1)]
    assert get_scenario("random").requests(digits_raw, fields("random", 0.3)) == [Request(1, None, 0.3)]
    assert get_scenario("sequential").requests(digits_raw, fields("sequential", 0.2, [2])) == [
        Request(1, None, 0.2), Request(2, None, 0.2)]
    assert get_scenario("sequential").requests(digits_raw, fields("sequential", None, [7, "2"])) == [
        Request(1, 7, None), Request(2, 2, None)]
    with pytest.raises(UserError) as caught:
        get_scenario("sequential").requests(digits_raw, fields("sequential", None, list(range(10))))
    assert str(caught.value) == "--requests would forget every class of digits: leave at least one"
