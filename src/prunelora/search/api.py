"""`prunelora.search` from Python: your image model and its data in memory, the search's answer back.

    result = prunelora.search(model, retain, forget, test=test, methods=["finetune", "salun@prune+lora"],
                              budget="retrain", trials=20)
    result.passed, result.method, result.settings, result.verdict    # on the verdict half, never searched
    result.model                                                     # the winner's model (the input untouched)

The same search as the command's (engine.py), in memory: no run folder, the study in memory unless `storage`
names one. Retrain's cost (the budget) is the original's recipe: pretrain_epochs passes over the retain set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..api import as_classifier, whole_classes
from ..config import RecipeConfig, RunConfig, UnlearnConfig, validate
from ..data import Splits, to_float
from ..data.user import as_imageset, check_alike
from ..errors import UserError
from ..models.outputs import logits_of, run_once
from ..models.user_models import UserModel
from ..registry import IMAGE
from ..user_run import UserSubject
from .command import SearchOptions, answer, searched_methods, setting_of
from .engine import Search, SearchOutcome, SearchSettings, TrialRecord
from .image import ImageTrials, trial_config
from .space import check_methods


@dataclass
class SearchResult:
    """What prunelora.search gives back."""

    passed: bool  # the winner (chosen on the selection half) passes on the verdict half too
    answer: str  # "Ship X (found in N trials, Y % of Retrain's cost) ..." or "None of N settings passed ..."
    model: nn.Module | None  # the winner's model (the input's class); None when none passed
    method: str | None
    settings: dict[str, Any]  # the winner's settings (method_args.*, unlearn.*)
    verdict: str | None  # measured on the verdict half
    figures: dict[str, Any]  # the winner's evidence on the verdict half
    trials: list[TrialRecord] = field(default_factory=list)
    spent_samples: int = 0
    budget_samples: int | None = None
    selection_ids: list[str] = field(default_factory=list)
    verdict_ids: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"SearchResult({self.answer})"


def _splits(model: nn.Module, retain, forget, test, mean, std) -> tuple[Splits, nn.Module]:
    """The request as Splits: whole classes when the forget set holds every sample of its classes, else samples
    (their unseen reference: the test set of the classes the model keeps)."""
    sets = {"retain": as_imageset(retain, "retain"), "forget": as_imageset(forget, "forget"),
            "test": as_imageset(test, "test")}
    check_alike(sets)
    example = to_float(sets["retain"].images[:2])
    net, _ = as_classifier(model, example, mean, std)
    width = int(logits_of(run_once(net, example)).shape[-1])
    classes = whole_classes(sets["retain"], sets["forget"])
    test_labels = sets["test"].labels.cpu().numpy()
    of_forgotten = np.isin(test_labels, classes) if classes else np.zeros(len(test_labels), dtype=bool)
    train = sets["retain"].join([sets["retain"], sets["forget"]])
    n_retain, n_forget = len(sets["retain"]), len(sets["forget"])
    splits = Splits(forget_train=sets["forget"], retain_train=sets["retain"],
                    test_retain=sets["test"].subset(torch.as_tensor(np.flatnonzero(~of_forgotten))),
                    test_forget=sets["test"].subset(torch.as_tensor(np.flatnonzero(of_forgotten))),
                    num_classes=width, forget_class=classes[0] if len(classes) == 1 else None,
                    mean=tuple(mean or (0.0,)), std=tuple(std or (1.0,)), class_names=[str(c) for c in range(width)],
                    train=train, forget_classes=list(classes), forget_index=np.arange(n_retain, n_retain + n_forget),
                    request_sets=[sets["forget"]], scenario="class" if classes else "named",
                    forget_ids=[f"forget:{i}" for i in range(n_forget)])
    return splits, net


def search(model: nn.Module, retain: Any, forget: Any, test: Any, *, methods: list[str] | None = None,
           budget: str = "retrain", trials: int | None = None, seed: int = 0, pretrain_epochs: int = 15,
           epochs: int = 10, mean: list[float] | None = None, std: list[float] | None = None,
           storage: str | None = None, flip: bool = True, patience: int | None = None,
           **options: Any) -> SearchResult:
    """Search the methods' declared spaces for the cheapest setting whose Retrain-free verdict passes (the forget
    set indistinguishable from unseen data, or its classes no longer predicted, with the test accuracy within 2
    points of the original's), on your image model; see the module docstring. options: UnlearnConfig fields
    (the settings a search does not vary)."""
    unknown = set(options) - {f.name for f in dataclasses.fields(UnlearnConfig)}
    if unknown:
        raise UserError(f"unknown option '{sorted(unknown)[0]}' (the unlearning settings are UnlearnConfig's)")
    search_options = SearchOptions(budget, trials, storage, False, patience)
    search_options.check()
    config = RunConfig(unlearn=UnlearnConfig(epochs=[epochs], **options), pretrain=RecipeConfig(epochs=pretrain_epochs))
    validate(config)
    splits, net = _splits(model, retain, forget, test, mean, std)
    chosen = searched_methods(list(methods or []), IMAGE, class_wise=bool(splits.forget_classes))
    check_methods(chosen, UnlearnConfig)
    device = splits.retain_train.labels.device
    user = UserModel(model, "py", "python", type(model).__name__, mean, std)
    subject = UserSubject(user, config, device, mean, std, to_float(splits.retain_train.images[:2]), "python",
                          progress=False, flip=flip)
    runner = ImageTrials(config, device, splits, subject, model.to(device), seed)
    settings = SearchSettings(runner.retrain_cost() if budget == "retrain" else None,
                              search_options.budget_seconds(), trials, storage or None,
                              f"prunelora-search-{seed}", seed, patience)
    outcome: SearchOutcome = Search(runner, chosen, settings, say=lambda line: None).run()
    if outcome.winner is None:
        return SearchResult(False, answer(outcome, runner.retrain_cost()), None, None, {}, None, {},
                            outcome.trials, outcome.spent, settings.budget_samples, runner.ids["selection"],
                            runner.ids["verdict"])
    setting = setting_of(outcome.winner)
    winner_subject = runner.subject_for(trial_config(config, setting))
    outcome_run = winner_subject.run(setting.method, model, runner.verdict_splits, seed, "winner")
    delivered = winner_subject.final(outcome_run)
    figures = runner.metrics(delivered, runner.verdict_splits)
    verdict = runner.judge_held_out(figures)
    return SearchResult(verdict.passed, answer(outcome, runner.retrain_cost(), verdict), delivered, setting.method,
                        setting.flat(), verdict.verdict,
                        figures, outcome.trials, outcome.spent, settings.budget_samples, runner.ids["selection"],
                        runner.ids["verdict"])
