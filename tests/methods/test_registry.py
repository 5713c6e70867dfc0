"""The method registry is the single source: a method registered in one line shows up everywhere."""
from __future__ import annotations

import pytest

from prunelora.cli import build_parser
from prunelora.config import resolve
from prunelora.driver import normalise_methods
from prunelora.errors import UserError
from prunelora.methods import METHODS, Method, get_method, grid_name, method_names, register
from prunelora.registry import CAUSAL_LM, IMAGE
from prunelora.report.tables import method_label, method_rank

from ..helpers import run_cli


@pytest.fixture
def dummy():
    method = register(Method("dummy-ft", "Dummy FT", "prune", "l1-sparse"))
    yield method
    METHODS.unregister("dummy-ft", task=IMAGE)


@pytest.mark.slow
def test_a_registered_method_appears_in_the_cli_the_tables_and_the_report(dummy, tmp_path, capsys):
    help_text = build_parser()._subparsers._group_actions[0].choices["reproduce"].format_help()
    assert "dummy-ft" in help_text
    assert "dummy-ft" in method_names(["all"])
    assert method_label("dummy-ft") == "Dummy FT" and method_rank("dummy-ft") == METHODS.names(IMAGE).index("dummy-ft") + 1
    assert get_method("dummy-ft").prunes and get_method("dummy-ft").trains_all
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["reproduce", "--preset", "smoke", "--models", "resnet18", "--methods",
                               "retrain,dummy-ft", "--out", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    assert "| Dummy FT |" in (out / "results.md").read_text()
    assert "Dummy FT" in (out / "report.html").read_text()
    assert {r["method"] for r in __import__("json").loads((out / "results.json").read_text())["rows"]} == {
        "original", "retrain", "dummy-ft"}


def expanded(**overrides) -> list[str]:
    """The methods a run resolves to: the config as given, its groups expanded by the preflight."""
    config = resolve(overrides=overrides)
    normalise_methods(config)
    return config.methods


def test_all_expands_to_every_method_that_fits_the_request():
    methods = METHODS.of(IMAGE)
    assert expanded(methods=["all"]) == list(methods)
    random = expanded(methods=["all"], data={"scenario": "random"})
    assert "logit-mask" not in random and random == [m for m in methods if not methods[m].class_only]
    assert expanded(methods=["lora", "all"])[0] == "lora"
    assert resolve().methods == ["paper"] and expanded() == [m for m in methods if methods[m].paper]


def test_grid_points_are_named_methods_where_one_matches():
    assert grid_name("none", "salun") == "salun"
    assert grid_name("prune+lora", "retain") == "prunelora"
    assert grid_name("prune+lora", "salun") == "salun@prune+lora"
    assert get_method("scrub@lora").label == "SCRUB@LoRA"


def test_one_registry_serves_both_tasks_with_one_spelling_and_one_label():
    """The same names mean each task's own objective; grid points parse and are labelled alike on both tasks."""
    assert get_method("npo@prune+lora", CAUSAL_LM).label == "NPO@PruneLoRA"
    assert get_method("salun@prune+lora").label == "SalUn@PruneLoRA"
    assert get_method("retain@prune+lora", CAUSAL_LM).name == "prunelora"  # a named point keeps its name
    assert get_method("ga", IMAGE).objective_class() is not get_method("ga", CAUSAL_LM).objective_class()
    assert method_names(["paper"], task=CAUSAL_LM) == ["retrain", "finetune", "prune-finetune", "lora", "prunelora"]
    table = method_names(["table"], task=CAUSAL_LM)
    assert table[0] == "retrain" and "npo" in table and "npo@prune+lora" in table and "npo@lora" not in table
    with pytest.raises(UserError, match="unknown surgery 'magic'"):
        get_method("npo@magic", CAUSAL_LM)
    with pytest.raises(UserError, match="unknown objective 'npo'"):
        get_method("npo@lora", IMAGE)  # NPO is a causal-LM objective
    with pytest.raises(ValueError, match="already registered"):
        register(Method("npo", "NPO again", "none", "npo", task=CAUSAL_LM))
    with pytest.raises(ValueError, match="name must match"):
        register(Method("bad@name", "Bad", "none", "retain"))
