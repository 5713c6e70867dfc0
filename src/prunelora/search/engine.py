"""The search loop: Optuna's TPE sampler over the declared spaces, its median pruner, a study in SQLite.

Single-objective, cheapest passing: a trial's value is its cost as a share of the budget where it passes, and
1 + its distance from passing where it does not, so the sampler first finds the passing region and then the
cheap end of it (a Pareto front of cost against distance is drawn from the same trials in the report). Each
method is tried once at its published defaults first (today's answer, beside the search; the paper's paradigms
first). Every trial trains under a sample cap (what is left of the budget, reserved in the study while it runs,
so several processes sharing one study never spend more than the budget together; once a setting passed, also
its cost: a dearer trial cannot win and stops there; a setting whose method's finished trials say it would
cost more than that is not started at all; with a patience N the search ends once N trials after the cheapest
pass found nothing cheaper, 0 at the first pass), reports its per-epoch distance (the
median pruner stops one that is worse than the median of earlier trials at the same epoch) and records its
cost, figures and verdict in the study's trial attributes. The sampler is seeded by the count of finished
trials, and a trial a killed process left running is failed and enqueued again with its settings, so a
resumed search runs the same trials as one never interrupted.
"""
from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..methods import Method
from ..metrics.finite import finite
from ..train import BudgetReached
from .space import Setting, default_setting, space_of, suggest

RUNNING_ATTRS = ("pid", "host")
MAX_UNAFFORDABLE = 50  # draws in a row that cost more than what is left: the search ends


@dataclass
class SearchSettings:
    """What a search may spend and where it keeps its study."""

    budget_samples: int | None  # at most this many training samples in all (Retrain's cost by default)
    budget_seconds: float | None = None  # or at most this many seconds of training (machine-dependent)
    trials: int | None = None  # or at most this many trials
    storage: str = ""  # an Optuna storage URL (sqlite:///...); several processes may share one
    study: str = "prunelora-search"  # the study's name in the storage (the search's fingerprint)
    seed: int = 0
    patience: int | None = None  # stop once this many trials after the cheapest pass found nothing cheaper


@dataclass
class TrialRecord:
    """One trial as the report and the record show it."""

    number: int
    state: str  # complete | pruned | failed
    setting: dict[str, Any]
    defaults: bool
    cost: int  # samples trained on
    seconds: float
    passed: bool = False
    distance: float | None = None
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""  # why a pruned trial stopped: the pruner, the budget, an error


@dataclass
class SearchOutcome:
    trials: list[TrialRecord]
    winner: TrialRecord | None  # the cheapest passing trial, or None
    best: TrialRecord | None  # the closest trial (the winner where one passed)
    spent: int  # samples, every trial's
    seconds: float
    budget_samples: int | None
    budget_seconds: float | None


def _optuna():
    try:
        import optuna
    except ImportError:  # a dependency of the package: said in one line where an environment lacks it
        raise UserError("prunelora search needs optuna: pip install 'optuna>=4,<6'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _alive(trial) -> bool:
    """Whether the process that runs a RUNNING trial is alive (on this host; another host's is trusted)."""
    attrs = trial.user_attrs
    if attrs.get("host") != socket.gethostname() or "pid" not in attrs:
        return True
    try:
        os.kill(int(attrs["pid"]), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return int(attrs["pid"]) != os.getpid()


class Search:
    """One search over `methods` with a task's trials (search/image.py, search/causal_lm.py)."""

    def __init__(self, runner, methods: list[Method], settings: SearchSettings,
                 say: Callable[[str], None] = print) -> None:
        self.runner, self.methods, self.settings, self.say = runner, methods, settings, say
        self.spaces = {m.name: space_of(m, runner.unlearn_cls) for m in methods}
        self.optuna = _optuna()

    # -- the study ------------------------------------------------------------------------------
    def study(self):
        """The study in the storage: created by the first process, loaded by the others (a race between two
        creating it at once is retried); SQLite waits for another process's lock rather than failing."""
        optuna = self.optuna
        pruner = optuna.pruners.MedianPruner(n_startup_trials=len(self.methods) + 3, n_warmup_steps=2)
        url = self.settings.storage or None
        for attempt in range(8):
            try:  # the storage's tables too are created by whichever process comes first
                storage = (optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
                           if url and url.startswith("sqlite") else url)
                return optuna.create_study(study_name=self.settings.study, storage=storage, load_if_exists=True,
                                           direction="minimize", pruner=pruner)
            except Exception:  # noqa: BLE001 - another process created it between our look and our insert
                if attempt == 7:
                    raise
                time.sleep(0.1 * (attempt + 1) + 0.05 * (os.getpid() % 7))

    def recover(self, study) -> None:
        """Trials a killed process left running: failed, and their settings enqueued to run again first."""
        states = self.optuna.trial.TrialState
        for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            if _alive(trial):
                continue
            study.tell(trial.number, state=states.FAIL, skip_if_finished=True)
            study.enqueue_trial(dict(trial.params), user_attrs={"defaults": bool(trial.user_attrs.get("defaults"))})

    def enqueue_defaults(self, study) -> None:
        """Each method at its published defaults, once (the first trials): the paper's paradigms first (PruneLoRA
        among them), then the others in the registry's order."""
        from ..methods import method_names

        paper = set(method_names(["paper"], task=self.runner.task))
        tried = {t.params.get("method") for t in study.get_trials(deepcopy=False) if t.user_attrs.get("defaults")}
        for method in sorted(self.methods, key=lambda m: m.name not in paper):
            if method.name not in tried:
                study.enqueue_trial({"method": method.name}, user_attrs={"defaults": True})

    def spent(self, study, me: int | None = None) -> tuple[int, float, int, int]:
        """(samples spent or reserved, seconds spent, trials finished, the sampler's draw count) over the whole
        study, every process's. The draw count, which seeds the next suggestion, counts every finished trial
        (a duplicate too) and every running one, but not one a killed process left: a resumed search draws what
        an uninterrupted one would, and two processes asking at once draw differently."""
        states = self.optuna.trial.TrialState
        samples, seconds, done, draws = 0, 0.0, 0, 0
        for trial in study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            if trial.state in (states.COMPLETE, states.PRUNED, states.FAIL):
                samples += int(attrs.get("cost", 0))
                seconds += float(attrs.get("seconds", 0.0))
                finished = trial.state != states.FAIL or bool(attrs.get("cost"))
                done += finished and not attrs.get("duplicate")
                draws += finished
            elif trial.state == states.RUNNING and trial.number != me:
                samples += int(attrs.get("reserved", 0))
                draws += 1
        return samples, seconds, done, draws

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> SearchOutcome:
        optuna, settings = self.optuna, self.settings
        study = self.study()
        self.recover(study)
        self.enqueue_defaults(study)
        names = [m.name for m in self.methods]
        by_name = {m.name: m for m in self.methods}
        skipped = 0
        while True:
            samples, seconds, done, draws = self.spent(study)
            if settings.trials is not None and done >= settings.trials:
                break
            if settings.patience is not None and self.since_cheapest_pass(study) >= settings.patience:
                break  # the user's patience: nothing cheaper in that many trials after the cheapest pass
            left = settings.budget_samples - samples if settings.budget_samples is not None else None
            if (left is not None and left < self.runner.smallest_step()) or (
                    settings.budget_seconds is not None and seconds >= settings.budget_seconds):
                break  # what is left would not pay for one step of any method
            study.sampler = optuna.samplers.TPESampler(seed=settings.seed * 7919 + draws, constant_liar=True,
                                                       n_startup_trials=max(5, len(names)))
            trial = study.ask()
            method = by_name[trial.suggest_categorical("method", names)]
            defaults = bool(trial.user_attrs.get("defaults"))
            setting = (default_setting(method, self.runner.list_epochs, self.runner.default_epochs())
                       if defaults else suggest(trial, method, self.spaces[method.name], self.runner.list_epochs))
            limit = self.runner.estimate(setting) if left is None else min(left, self.runner.estimate(setting))
            cheapest = self.cheapest_passing(study)
            if cheapest is not None and cheapest < limit:  # beyond it a trial cannot win: it stops there
                limit = cheapest
                trial.set_user_attr("capped_at_winner", True)
            expected = self.expected_cost(study, setting)
            if expected is not None and expected > limit:  # it could not finish: not started, nothing spent
                trial.set_user_attr("pid", os.getpid())
                trial.set_user_attr("host", socket.gethostname())
                trial.set_user_attr("duplicate", True)  # left out of the trials, as a repeated draw is
                trial.set_user_attr("unaffordable", int(expected))
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                skipped += 1
                if skipped >= MAX_UNAFFORDABLE:
                    break  # what is left pays for none of the settings the sampler keeps drawing
                continue
            skipped = 0
            trial.set_user_attr("reserved", int(limit))
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("host", socket.gethostname())
            if not defaults and self.tried(study, setting, trial.number):  # another process drew it too
                trial.set_user_attr("duplicate", True)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            trial.set_user_attr("setting", setting.flat())
            self.say(f"trial {trial.number}: {_described(setting)}")
            self.one(study, trial, setting, limit)
        return self.outcome(study)

    def expected_cost(self, study, setting: Setting) -> int | None:
        """What a setting will cost, from a finished trial of its method (its samples per epoch, times the
        setting's epochs), or None before one finished (the runner's estimate is an upper bound, not this)."""
        epochs = setting.unlearn.get("epochs")
        total = max(epochs) if isinstance(epochs, list) else epochs
        if total is None:
            total = self.runner.default_epochs()
        for trial in study.get_trials(deepcopy=False):
            if trial.state != self.optuna.trial.TrialState.COMPLETE:
                continue
            done = dict(trial.user_attrs.get("setting") or {})
            if done.get("method") != setting.method:
                continue
            ran = done.get("unlearn.epochs")
            ran = max(ran) if isinstance(ran, list) else ran if ran is not None else self.runner.default_epochs()
            if ran:
                return int(trial.user_attrs.get("cost", 0) / ran * total)
        return None

    def cheapest_passing(self, study) -> int | None:
        """The cost of the cheapest trial that passed so far (any process's), or None."""
        costs = [int(t.user_attrs.get("cost", 0)) for t in study.get_trials(deepcopy=False)
                 if t.state == self.optuna.trial.TrialState.COMPLETE and t.user_attrs.get("passed")]
        return min(costs) if costs else None

    def since_cheapest_pass(self, study) -> int:
        """How many trials finished after the cheapest passing one (the first at that cost), or -1 before any
        passed. Repeated draws and settings left unstarted do not count; a trial a killed process left is run
        again, so it counts once it finishes."""
        states = self.optuna.trial.TrialState
        finished = sorted((t for t in study.get_trials(deepcopy=False)
                           if t.state in (states.COMPLETE, states.PRUNED) and not t.user_attrs.get("duplicate")),
                          key=lambda t: t.number)
        cheapest = self.cheapest_passing(study)
        if cheapest is None:
            return -1
        first = next(i for i, t in enumerate(finished) if t.state == states.COMPLETE and t.user_attrs.get("passed")
                     and int(t.user_attrs.get("cost", 0)) == cheapest)
        return len(finished) - first - 1

    def tried(self, study, setting: Setting, me: int) -> bool:
        """Whether another trial of the study (finished or running) holds this very setting."""
        flat, failed = setting.flat(), self.optuna.trial.TrialState.FAIL  # a killed trial's setting runs again
        return any(t.number != me and t.state != failed and t.user_attrs.get("setting") == flat
                   for t in study.get_trials(deepcopy=False))

    def one(self, study, trial, setting: Setting, limit: int) -> None:
        """Run, judge and record one trial."""
        optuna = self.optuna
        states = optuna.trial.TrialState

        defaults = bool(trial.user_attrs.get("defaults"))
        step = [0]

        def report(epoch: int, distance: float) -> None:
            step[0] += 1  # epochs in order, whatever each fit() calls its own (a run per budget restarts at 1)
            trial.report(distance, step[0])
            if not defaults and trial.should_prune():  # today's defaults always run to the end
                raise optuna.TrialPruned(f"epoch {step[0]}: farther from the target than the median of earlier trials")

        started = time.perf_counter()
        try:
            row, cost, seconds, _ = self.runner.run(setting, limit, report)
        except (BudgetReached, optuna.TrialPruned, UserError) as stop:
            capped = bool(trial.user_attrs.get("capped_at_winner"))
            reason = ("the cost of the cheapest passing setting" if isinstance(stop, BudgetReached) and capped else
                      "the budget" if isinstance(stop, BudgetReached) else
                      "the pruner" if isinstance(stop, optuna.TrialPruned) else f"error: {stop}")
            trial.set_user_attr("cost", int(getattr(self.runner, "last_cost", limit)))
            trial.set_user_attr("seconds", time.perf_counter() - started)
            trial.set_user_attr("stopped", reason)
            study.tell(trial, state=states.PRUNED)
            self.say(f"  stopped by {reason}")
            return
        judged = self.runner.judge(row)
        budget = self.settings.budget_samples or max(1, limit)
        value = cost / budget if judged.passed else 1.0 + judged.distance
        trial.set_user_attr("cost", int(cost))
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("passed", bool(judged.passed))
        trial.set_user_attr("distance", float(judged.distance))
        trial.set_user_attr("verdict", judged.verdict)
        trial.set_user_attr("reasons", list(judged.reasons))
        trial.set_user_attr("figures", _plain(row))
        study.tell(trial, value)
        self.say(f"  {judged.verdict}: cost {cost} samples ({seconds:.1f} s), distance {judged.distance:.3f}")

    # -- the answer -----------------------------------------------------------------------------
    def outcome(self, study) -> SearchOutcome:
        states = self.optuna.trial.TrialState
        state_name = {states.COMPLETE: "complete", states.PRUNED: "pruned", states.FAIL: "failed"}
        records = []
        for trial in study.get_trials(deepcopy=False):
            if trial.state not in state_name or trial.user_attrs.get("duplicate"):
                continue
            a = trial.user_attrs
            records.append(TrialRecord(trial.number, state_name[trial.state], dict(a.get("setting") or {}),
                                       bool(a.get("defaults")), int(a.get("cost", 0)), float(a.get("seconds", 0.0)),
                                       bool(a.get("passed")), a.get("distance"), a.get("verdict", ""),
                                       list(a.get("reasons") or []), dict(a.get("figures") or {}),
                                       a.get("stopped", "")))
        complete = [r for r in records if r.state == "complete"]
        passing = sorted((r for r in complete if r.passed), key=lambda r: (r.cost, r.distance or 0.0, r.number))
        closest = sorted(complete, key=lambda r: (not r.passed, r.distance if r.distance is not None else math.inf,
                                                  r.cost, r.number))
        spent = sum(r.cost for r in records)
        return SearchOutcome(records, passing[0] if passing else None, closest[0] if closest else None, spent,
                             sum(r.seconds for r in records), self.settings.budget_samples,
                             self.settings.budget_seconds)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A trial's figures as the study stores them: finite numbers as floats, flags and words as they are."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, (bool, str)) or type(value).__name__ == "bool_":
            out[key] = value if isinstance(value, str) else bool(value)
        elif finite(value) or (hasattr(value, "item") and finite(value.item())):
            out[key] = float(value)
    return out


def _described(setting: Setting) -> str:
    shown = ", ".join(f"{k.split('.', 1)[1] if k.startswith('method_args.') else k}={v:.3g}"
                      if isinstance(v, float) else f"{k}={v}" for k, v in setting.flat().items() if k != "method")
    return f"{setting.method} ({shown})" if shown else setting.method
