"""A search's trials on the image task: a setting run on the original, measured on the selection half.

The unseen reference data (the test images: the retained classes' for a sample request, the forgotten classes'
for a class request) is split once, with the seed, into a selection half (what every trial is judged on) and a
verdict half (what the winner's reported verdict is measured on, never seen by the search). A trial trains
under the search's sample cap (train.capped) and reports its per-epoch distance to the target (the forget
accuracy against Retrain's, or against unseen data's) so the pruner can stop a hopeless one.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
from torch import nn

from ..config import RunConfig
from ..data import ImageSet, Splits
from ..driver.evaluation import measure
from ..driver.registry import RegistrySubject
from ..metrics.outputs import set_accuracy
from ..registry import IMAGE
from ..train import capped, watched
from .space import Setting
from .target import Judgement, judge_image

SALT = 0x5E1EC7  # the selection/verdict split's seed stream, apart from every other draw of the seed


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(selection, verdict) positions of n samples: a seeded half each, disjoint, in ascending order."""
    order = np.random.default_rng([seed, SALT]).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def split_reference(splits: Splits, seed: int) -> tuple[Splits, Splits, dict[str, list[str]]]:
    """(the selection splits, the verdict splits, the ids of each half): the test images split in halves."""
    parts, ids = {}, {"selection": [], "verdict": []}
    for name in ("test_retain", "test_forget"):
        data: ImageSet = getattr(splits, name)
        chosen, held = halves(len(data), seed)
        parts[name] = (data.subset(chosen), data.subset(held))
        ids["selection"] += [f"{name}:{i}" for i in chosen.tolist()]
        ids["verdict"] += [f"{name}:{i}" for i in held.tolist()]
    selection = dataclasses.replace(splits, test_retain=parts["test_retain"][0], test_forget=parts["test_forget"][0])
    verdict = dataclasses.replace(splits, test_retain=parts["test_retain"][1], test_forget=parts["test_forget"][1])
    return selection, verdict, ids


def trial_config(config, setting: Setting):
    """The run's configuration (RunConfig or LMConfig: both hold method_args, unlearn and methods) with a
    setting's values: the method's own (method_args) and unlearn.*."""
    out = copy.deepcopy(config)
    out.method_args = {**out.method_args, setting.method: {**out.method_args.get(setting.method, {}),
                                                             **setting.method_args}}
    out.unlearn = dataclasses.replace(out.unlearn, **setting.unlearn)
    out.methods = [setting.method]
    return out


class ImageTrials:
    """The image task's trials for one model, seed and request (search/engine.py drives them).

    config: the run's configuration (a trial's is it with the setting's values); subject: the model as the
    driver's subject (a registry model, the user's own); retrain: Retrain's model where the search judges
    against it (a researcher's run), else None."""

    task = IMAGE
    list_epochs = True

    def __init__(self, config: RunConfig, device, splits: Splits, subject, original: nn.Module, seed: int,
                 retrain: nn.Module | None = None) -> None:
        from ..config import UnlearnConfig

        self.config, self.device, self.subject, self.original, self.seed = config, device, subject, original, seed
        self.unlearn_cls = UnlearnConfig
        self.splits = splits
        self.selection, self.verdict_splits, self.ids = split_reference(splits, seed)
        self.timings: dict[str, float] = {}
        self.last_cost = 0
        self.reference = subject.evaluated(original)
        self.original_row = self.metrics(original, self.selection)
        self.retrain = retrain
        self.retrain_row = self.metrics(retrain, self.selection) if retrain is not None else None

    # -- what a trial costs ----------------------------------------------------------------------
    def default_epochs(self) -> int:
        """The unlearning budget a method's defaults run for: the run's longest."""
        return max(self.config.unlearn.epochs)

    def retrain_cost(self) -> int:
        """Retrain's cost in samples: the original's recipe, epochs passes over the retain set."""
        return int(self.config.pretrain.epochs * len(self.splits.retain_train))

    def smallest_step(self) -> int:
        """Fewer samples than this left cannot train a step worth judging: the forget set (one epoch of GA)."""
        return max(1, len(self.splits.forget_train))

    def estimate(self, setting: Setting) -> int:
        """An upper bound of a setting's cost in samples (what a trial reserves of the budget): its epochs over
        the retain and forget sets, twice (objectives cycle a second set beside the first)."""
        epochs = max(setting.unlearn["epochs"]) if setting.unlearn.get("epochs") else max(self.config.unlearn.epochs)
        return int(2 * epochs * (len(self.splits.retain_train) + len(self.splits.forget_train)))

    # -- measuring -------------------------------------------------------------------------------
    def metrics(self, model: nn.Module, splits: Splits) -> dict[str, Any]:
        return measure(self.subject.evaluated(model), splits, self.seed, self.config, None, self.reference,
                       self.timings, False)

    def target_accuracy(self) -> float:
        """The forget accuracy a passing model is near: Retrain's, else unseen data's (0 for a whole class)."""
        if self.retrain_row is not None:
            return 100.0 - float(self.retrain_row["ua"])
        if len(self.splits.test_forget):
            return 0.0
        unseen = self.original_row.get("unseen_acc")
        return float(unseen) if unseen is not None and np.isfinite(unseen) else 100.0 - float(self.original_row["ua"])

    # -- one trial -------------------------------------------------------------------------------
    def run(self, setting: Setting, limit: int, report) -> tuple[dict[str, Any], int, float, nn.Module]:
        """(the figures on the selection half, the samples trained on, the seconds, the model) of one setting;
        report(epoch, distance) after every epoch may raise to stop it. BudgetReached past `limit`."""
        config = trial_config(self.config, setting)
        subject = self.subject_for(config)
        target = self.target_accuracy()
        forget = self.splits.forget_train

        def watch(epoch: int, model: nn.Module) -> None:
            report(epoch, abs(set_accuracy(model, forget) - target) / 100.0)

        started = time.perf_counter()
        with capped(limit) as cap:
            try:
                with watched(watch):
                    outcome = subject.run(setting.method, self.original, self.selection, self.seed,
                                          f"trial {setting.method}")
            finally:
                self.last_cost = cap.used  # what a stopped trial spent, too
        seconds = time.perf_counter() - started
        model = subject.final(outcome)
        return self.metrics(model, self.selection), cap.used, seconds, model

    def judge(self, row: dict[str, Any]) -> Judgement:
        return judge_image(row, self.original_row, self.retrain_row)

    def judge_held_out(self, row: dict[str, Any]) -> Judgement:
        """The judgement of figures measured on the verdict half, against the original (and Retrain) there."""
        original = self.metrics(self.original, self.verdict_splits)
        retrain = self.metrics(self.retrain, self.verdict_splits) if self.retrain is not None else None
        return judge_image(row, original, retrain)

    def subject_for(self, config: RunConfig, progress: bool = False):
        """The run's subject with another configuration (a trial's, the winner's)."""
        if isinstance(self.subject, RegistrySubject):
            return RegistrySubject(self.subject.name, config, self.device, self.subject.flip, progress)
        return dataclasses.replace(self.subject, config=config, progress=progress)
