"""Each method's space is declared in its registry entries (objective, surgery, the task's budget), none in the
search code; a method added with one file and one registration line is searchable at once."""
from __future__ import annotations

import optuna
import pytest

from prunelora.config import UnlearnConfig
from prunelora.config.causal_lm import LMUnlearnConfig
from prunelora.methods import METHODS, Method, get_method, method_names, register
from prunelora.objectives import OBJECTIVES, register_objective
from prunelora.objectives.retain import RetainLoss
from prunelora.registry import CAUSAL_LM, IMAGE
from prunelora.search.space import check_spec, space_of, suggest

UNLEARN = {IMAGE: UnlearnConfig, CAUSAL_LM: LMUnlearnConfig}


@pytest.mark.parametrize("task", [IMAGE, CAUSAL_LM])
def test_every_method_of_the_grid_declares_a_space(task):
    for name in method_names(["grid"], task=task):
        method = get_method(name, task)
        params = space_of(method, UNLEARN[task])
        if method.exact:
            assert params == []  # Retrain is the yardstick: nothing to search
            continue
        keys = {p.key for p in params}
        assert "unlearn.epochs" in keys and "method_args.lr" in keys, (task, name, keys)
        if method.prunes:
            assert "unlearn.prune_amount" in keys
        if method.adapts:
            assert "unlearn.lora_r" in keys


def test_a_space_comes_from_the_registry_entries_not_from_the_search():
    salun = space_of(get_method("salun@prune+lora"), UnlearnConfig)
    assert {p.key for p in salun} == {"method_args.lr", "method_args.share", "unlearn.prune_amount",
                                      "unlearn.prune_score", "unlearn.lora_r", "unlearn.epochs"}
    assert dict((p.key, p.spec) for p in salun)["method_args.share"] == OBJECTIVES.get("salun", IMAGE).space["share"]


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError):
        check_spec(("log", 0.0, 1.0), "x")
    with pytest.raises(ValueError):
        check_spec(("normal", 0, 1), "x")


def test_a_method_added_in_one_line_is_searchable():
    class Louder(RetainLoss):
        name = "louder"
        label = "louder CE"
        space = {"lr": ("log", 1e-3, 1e-1)}

    register_objective(Louder, task=IMAGE)
    register(Method("louder", "Louder", "lora", "louder"))
    try:
        method = get_method("louder")
        params = space_of(method, UnlearnConfig)
        study = optuna.create_study()
        setting = suggest(study.ask(), method, params, list_epochs=True)
        assert setting.method == "louder" and 1e-3 <= setting.method_args["lr"] <= 1e-1
        assert isinstance(setting.unlearn["epochs"], list) and setting.unlearn["lora_r"] in (4, 8, 16, 32)
        assert "--set method_args.louder.lr=" in " ".join(setting.set_flags())
    finally:
        METHODS.unregister("louder", task=IMAGE)
        OBJECTIVES.unregister("louder", task=IMAGE)
