"""The search loop: the budget is never exceeded, a killed search resumes to the same trials, selection and
verdict data never overlap, and two processes share one study."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prunelora.methods import get_method
from prunelora.registry import IMAGE
from prunelora.search.engine import Search, SearchSettings
from prunelora.search.image import halves
from prunelora.search.target import Judgement
from prunelora.train import BudgetReached


class FakeTrials:
    """Trials that cost what their epochs say and pass where the learning rate is near 1e-2 (no training)."""

    task = IMAGE
    list_epochs = True
    from prunelora.config import UnlearnConfig as unlearn_cls  # noqa: N815

    def __init__(self, stop_after: int | None = None, delay: float = 0.0) -> None:
        self.runs, self.stop_after, self.last_cost, self.delay = 0, stop_after, 0, delay

    def default_epochs(self) -> int:
        return 5

    def smallest_step(self) -> int:
        return 10

    def estimate(self, setting) -> int:
        return 100 * max(setting.unlearn["epochs"])

    def run(self, setting, limit, report):
        self.runs += 1
        time.sleep(self.delay)  # a trial takes a while: two processes' trials interleave
        if self.stop_after is not None and self.runs > self.stop_after:
            raise KeyboardInterrupt  # the process is killed in the middle of this trial
        cost = 100 * max(setting.unlearn["epochs"])
        if cost > limit:
            self.last_cost = limit
            raise BudgetReached("spent")
        lr = setting.method_args.get("lr", 1e-3)
        return {"lr": lr}, cost, 0.01, None

    def judge(self, row) -> Judgement:
        distance = abs(np.log10(row["lr"]) + 2.0)
        return Judgement(distance < 0.3, 0.0 if distance < 0.3 else distance, "x")


def _search(storage: str, trials: int | None = None, budget: int | None = 5000, runner=None, study="s",
            patience: int | None = None):
    methods = [get_method("finetune"), get_method("rl")]
    return Search(runner or FakeTrials(), methods, SearchSettings(budget, None, trials, storage, study, 0, patience),
                  say=lambda line: None)


def test_the_budget_is_never_exceeded(tmp_path):
    outcome = _search(f"sqlite:///{tmp_path / 's.db'}", budget=3000).run()
    assert outcome.spent <= 3000 and len(outcome.trials) >= 2
    assert all(t.cost <= 3000 for t in outcome.trials)
    assert [t.defaults for t in outcome.trials[:2]] == [True, True]  # each method at its defaults first


def test_a_killed_search_resumes_to_the_same_trials(tmp_path):
    whole = _search(f"sqlite:///{tmp_path / 'whole.db'}", trials=8, budget=None).run()
    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    with pytest.raises(KeyboardInterrupt):
        _search(storage, trials=8, budget=None, runner=FakeTrials(stop_after=5)).run()
    resumed = _search(storage, trials=8, budget=None).run()
    done = [t for t in resumed.trials if t.state != "failed"]
    assert [t.setting for t in done] == [t.setting for t in whole.trials]
    assert sum(t.state == "failed" for t in resumed.trials) == 1  # the killed trial, run again


def test_selection_and_verdict_halves_never_overlap():
    for n, seed in ((101, 0), (2, 3), (500, 7)):
        chosen, held = halves(n, seed)
        assert not set(chosen) & set(held) and sorted([*chosen, *held]) == list(range(n))
        again, _ = halves(n, seed)
        assert list(again) == list(chosen)


WORKER = """
import sys
from tests.search.test_engine import FakeTrials, _search
runner = FakeTrials(delay=0.3)
outcome = _search(sys.argv[1], trials=int(sys.argv[2]), budget=int(sys.argv[3]), runner=runner, study="shared").run()
print(len(outcome.trials), outcome.spent)
"""


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, storage, "10", "20000"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED") and not t.user_attrs.get("duplicate")]
    pids = {t.user_attrs["pid"] for t in done}
    assert len(pids) == 2 and 10 <= len(done) <= 12  # both ran trials, into one study, up to the limit
    assert sum(t.user_attrs["cost"] for t in done) <= 20000
    assert len({json.dumps(t.user_attrs["setting"], sort_keys=True) for t in done if not t.user_attrs.get("defaults")})\
        == len([t for t in done if not t.user_attrs.get("defaults")])  # no setting tried twice


class AlwaysPasses(FakeTrials):
    def judge(self, row) -> Judgement:
        return Judgement(True, 0.0, "passes")


def test_once_a_setting_passes_no_trial_spends_more_than_it(tmp_path):
    outcome = _search(f"sqlite:///{tmp_path / 's.db'}", trials=12, budget=None, runner=AlwaysPasses()).run()
    first = outcome.trials[0]
    assert first.passed and first.setting["method"] == "finetune"  # the paper's paradigm before RL
    cheapest = first.cost
    for trial in outcome.trials[1:]:
        assert trial.cost <= cheapest, trial
        if trial.state == "pruned":
            assert trial.stopped == "the cost of the cheapest passing setting"
        elif trial.passed:
            cheapest = min(cheapest, trial.cost)
    assert outcome.winner.cost == min(t.cost for t in outcome.trials if t.passed)


def test_a_setting_that_could_not_finish_is_not_started(tmp_path):
    """Once a method's trial finished, its cost per epoch says whether another setting fits what is left: one that
    does not is never started (no budget spent on a trial cut short), and the search still ends."""
    outcome = _search(f"sqlite:///{tmp_path / 's.db'}", budget=1300).run()
    assert outcome.spent <= 1300
    assert [t.cost for t in outcome.trials[:2]] == [500, 500]  # both methods at their defaults (5 epochs)
    assert all(t.state == "complete" for t in outcome.trials)  # nothing cut short by the budget
    assert all(t.cost <= 300 for t in outcome.trials[2:])  # only what fitted the 300 samples left


class PassesFromTheThird(FakeTrials):
    """The first two trials fail, every later one passes: where a patience starts counting is visible."""

    def __init__(self) -> None:
        super().__init__()
        self.judged = 0

    def judge(self, row) -> Judgement:
        self.judged += 1
        return Judgement(self.judged >= 3, 0.0 if self.judged >= 3 else 1.0, "x")


@pytest.mark.parametrize("patience", [0, 2])
def test_patience_stops_that_many_trials_after_the_cheapest_pass(tmp_path, patience):
    """--patience N: the search ends once N trials after the cheapest passing one found nothing cheaper (0: at the
    first pass), so it spends less than the budget; without it the same search runs until --trials."""
    outcome = _search(f"sqlite:///{tmp_path / 's.db'}", trials=12, budget=None, runner=PassesFromTheThird(),
                      patience=patience).run()
    passes = [i for i, t in enumerate(outcome.trials) if t.passed]
    assert passes and passes[0] == 2
    cheapest = min(outcome.trials[i].cost for i in passes)
    first_cheapest = next(i for i in passes if outcome.trials[i].cost == cheapest)
    assert len(outcome.trials) == first_cheapest + 1 + patience  # exactly `patience` trials after it
    assert all(t.cost >= cheapest for t in outcome.trials[first_cheapest + 1:] if t.passed)
    unbounded = _search(f"sqlite:///{tmp_path / 'u.db'}", trials=12, budget=None, runner=PassesFromTheThird()).run()
    assert len(unbounded.trials) == 12 > len(outcome.trials)
