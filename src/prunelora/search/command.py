"""`prunelora search`: the cheapest setting that passes the evidence on held-out data, or an honest "none does".

    prunelora search --models resnet18 --out runs/search                  # a registry model, Retrain's cost
    prunelora search --model hf:DIR --forget request.txt --out runs/mine  # your own model
    prunelora search --task causal-lm --model hf:DIR --dataset train.jsonl --forget forget.txt --holdout h.jsonl

Per model and seed: the original (trained, reused or yours), Retrain where asked (`--retrain`: a researcher's
run; its cost is the yardstick, not the search's), then the search (engine.py) over the methods' declared
spaces within the budget (`--budget retrain`: Retrain's cost in training samples, its recipe's epochs passes
over the retain set; or SECONDS of training; `--trials N`). The winner, the cheapest passing setting, is run
again through the stage driver (the same seed: the same model as its trial) and measured on the verdict half
of the unseen data, which the search never saw; it is delivered with its record, whose `search` block says how
many trials ran, what they spent and which samples chose and which judged. search.json and trials.csv hold
every trial; results.md and report.html open with the answer.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import run_folder, storage
from ..config import fingerprint, resolve, to_dict
from ..driver import Experiment, ImageTask, finish, normalise_methods, select_device
from ..errors import UserError
from ..machine import LoadProbe, set_threads
from ..methods import get_method, method_names
from ..registry import IMAGE
from .engine import Search, SearchOutcome, SearchSettings, TrialRecord
from .image import ImageTrials, trial_config
from .space import Setting, check_methods
from .target import Judgement, judge_image

DEFAULT_METHODS = ["grid"]  # every surgery x objective of the task (Retrain is the yardstick, never a candidate)


@dataclass
class SearchOptions:
    """The search's own options (the run's configuration holds the rest)."""

    budget: str = "retrain"  # "retrain" | seconds of training
    trials: int | None = None
    storage: str | None = None  # an Optuna storage URL; default sqlite:///OUT/search.db
    retrain: bool = False  # judge against Retrain (a researcher's run) instead of without it
    patience: int | None = None  # stop once this many trials after the cheapest pass found nothing cheaper

    def budget_seconds(self) -> float | None:
        if self.budget == "retrain":
            return None
        try:
            seconds = float(self.budget)
        except ValueError:
            raise UserError(f"--budget {self.budget}: give 'retrain' (Retrain's cost) or a number of seconds") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise UserError(f"--budget {self.budget}: give a positive number of seconds, or 'retrain'")
        return seconds

    def check(self) -> None:
        self.budget_seconds()
        if self.trials is not None and self.trials < 1:
            raise UserError(f"--trials {self.trials}: give at least 1")
        if self.patience is not None and self.patience < 0:
            raise UserError(f"--patience {self.patience}: give 0 (stop at the first pass) or more trials")


def searched_methods(names: list[str], task: str, class_wise: bool = True) -> list:
    """The methods a search tries: the groups expanded, Retrain and what does not train left out."""
    expanded = method_names(names or DEFAULT_METHODS, class_wise=class_wise, task=task)
    methods = [get_method(n, task) for n in expanded]
    methods = [m for m in methods if not m.exact and type(m).__name__ == "Method"]
    if not methods:
        raise UserError("--methods leaves nothing to search (Retrain is the yardstick, not a candidate)")
    return methods


def setting_of(record: TrialRecord) -> Setting:
    """The Setting a trial record holds (its flat method_args.* and unlearn.* keys)."""
    flat = dict(record.setting)
    method = flat.pop("method")
    setting = Setting(method)
    for key, value in flat.items():
        where, _, rest = key.partition(".")
        if where == "method_args":
            setting.method_args[rest.split(".", 1)[1]] = value
        elif where == "unlearn":
            setting.unlearn[rest] = value
    return setting


def reproduce_line(base: list[str], setting: Setting, verb: str = "unlearn") -> str:
    """The one command that runs the winner without searching (base: the model and the winner's config file)."""
    flag = "--methods" if verb == "reproduce" else "--method"
    return " ".join([f"prunelora {verb}", *base, f"{flag} {setting.method}", *setting.set_flags()])


def changed(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of a nested config dict that differ from the defaults' (a file that states only what was chosen,
    so that no default collides with a flag given beside it)."""
    kept = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            inner = changed(value, default)
            if inner:
                kept[key] = inner
        elif key not in defaults or value != default:
            kept[key] = value
    return kept


def write_winner_config(out: Path, name: str, seed: int, config: dict[str, Any], defaults: dict[str, Any]) -> Path:
    """The winner's configuration (its preset, and what differs from the preset: data, request, its settings) as
    the YAML its reproduce line reads: the search's own flags need not be repeated, and nothing the search ran
    with is left out."""
    import yaml

    config = {k: v for k, v in changed(config, defaults).items() if k not in ("out", "models", "methods")}
    config["preset"], config["seeds"] = defaults["preset"], [seed]
    path = out / f"winner-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}-seed{seed}.yaml"
    storage.write_text(path, "# the search's winner: run it with the line in search.json's `reproduce`\n"
                       + yaml.safe_dump(config, sort_keys=False))
    return path


def answer(outcome: SearchOutcome, retrain_cost: int | None, held_out: Judgement | None = None,
           estimated: bool = True) -> str:
    """The first line of the results: ship X (in N trials, its share of Retrain's cost), or retrain, and why.
    held_out: the winner's judgement on the verdict half (None before it is measured); estimated: Retrain's
    cost is the original's recipe, not a measured Retrain."""
    n = len(outcome.trials)
    if outcome.winner is None:
        best = outcome.best
        closest = (f"; the closest: {best.setting.get('method')} ({best.verdict}, distance {best.distance:.3f})"
                   if best is not None and best.distance is not None else "")
        return f"None of {n} settings passed within the budget: retrain{closest}."
    method = outcome.winner.setting.get("method")
    share = (f"{outcome.spent / retrain_cost:.0%} of Retrain's {'estimated ' if estimated else ''}cost"
             if retrain_cost else "")
    if held_out is not None and not held_out.passed:
        return (f"{method} passed on the selection half ({n} trials{', ' + share if share else ''}) but not on "
                f"held-out data ({held_out.verdict}): retrain, or search again with more data.")
    verdict = held_out.verdict if held_out is not None else f"{outcome.winner.verdict} (on the selection half)"
    if retrain_cost and outcome.spent > retrain_cost:
        return (f"{method} passes (verdict on held-out data: {verdict}), but finding it cost {share}: retraining "
                "would have been cheaper.")
    return f"Ship {method} (found in {n} trials{', ' + share if share else ''}); verdict on held-out data: {verdict}."


class VerdictImageTask(ImageTask):
    """The image task of a run, measuring on the verdict half of the unseen data (search/image.py), and adding
    the search's block to every record it writes."""

    def __init__(self, exp: Experiment, parent: ImageTask, verdict_splits: dict[int, Any],
                 block: dict[str, Any]) -> None:
        self.__dict__.update(parent.__dict__)
        self.exp, self.config = exp, exp.config
        self._splits = {(seed, 1): s for seed, s in verdict_splits.items()}
        self._subjects = {}
        self.block = block

    def record_facts(self, seed: int, request: int, start) -> dict[str, Any]:
        return {**super().record_facts(seed, request, start), "search": self.block}


def image_search(yaml_path: str | None, flags: dict[str, Any], options: SearchOptions, *, progress: bool = True,
                 overwrite: bool = False, say=print, model: str | None = None, weights: str | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None) -> dict[str, Any]:
    """`prunelora search` on image models: registry models (--models) or the user's own (--model hf:DIR |
    py:module:factory), a search per model and seed."""
    options.check()
    config = resolve(yaml_path=yaml_path, overrides=flags)
    if weights is not None and model is None:
        raise UserError("--weights goes with --model py:...: give the model too")
    requested = list(config.methods) if "methods" in flags else []
    methods = searched_methods(requested, IMAGE, config.data.class_wise)
    from ..config import UnlearnConfig

    check_methods(methods, UnlearnConfig)
    config.methods = ["retrain"] if options.retrain else []
    normalise_methods(config, needed=False)
    user = None
    if model is not None:
        from ..commands import adopt_input_size, check_normalisation
        from ..models.user_models import load_user_model

        check_normalisation(mean, std)
        user = load_user_model(model, weights, progress=progress)
        mean, std = (mean, std) if mean is not None or std is not None else (user.mean, user.std)
        adopt_input_size(config, user)
        config.models = [user.name]
    identity = {**config.identity(), "search": dataclasses.asdict(options) | {"methods": [m.name for m in methods]}}
    if user is not None:
        identity["user_model"] = {"model": model, "weights": storage.file_digest(weights) if weights else None,
                                  "mean": mean, "std": std}
    config.out = config.out or f"runs/search/{fingerprint(identity)[:8]}"
    out = Path(config.out)
    probe = LoadProbe(set_threads(config.threads))
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), ImageTask, progress, probe=probe, unlearns=False,
                     registry_models=user is None)
    if len(exp.raw.test_labels) < 2:
        raise UserError(f"search judges every trial on test images and its winner on other ones: "
                        f"{config.data.dataset} has {len(exp.raw.test_labels)}; add them (an image folder's "
                        "test/<class>/ folders, an .npz's test_images and test_labels, a datasets folder's test split)")
    subjects = [exp.subject(name) for name in config.models] if user is None else [
        user_subject(exp, user, model, weights, mean, std, progress)]
    run_folder.claim(config.out, "search", identity, overwrite,
                     reads=(config.data.dataset, config.data.data_root, *(config.data.forget or ()),
                            *((model.removeprefix("hf:"), weights) if user is not None else ())))
    storage_url = options.storage or f"sqlite:///{(out / 'search.db').resolve()}"
    rows, blocks = [], []
    for seed in config.seeds:
        for subject in subjects:
            name = subject.name
            original, meta = exp.original(subject, seed) if user is None else subject.original()
            retrain = None
            if options.retrain:  # the yardstick: the driver's stage, reused when the run folder holds it
                _, final, _ = exp.stage(subject, "retrain", lambda model=original: model, meta["key"], seed)
                retrain = final()
            trials = ImageTrials(exp.config, exp.device, exp.splits(seed), subject, original, seed, retrain)
            study = f"{fingerprint(identity)}-{name}-seed{seed}"
            settings = SearchSettings(trials.retrain_cost() if options.budget == "retrain" else None,
                                      options.budget_seconds(), options.trials, storage_url, study, seed,
                                      options.patience)
            say(f"searching {name} seed {seed}: {len(methods)} methods, budget "
                f"{settings.budget_samples or settings.budget_seconds} {'samples' if settings.budget_samples else 's'}")
            outcome = Search(trials, methods, settings, say).run()
            base = (["--checkpoint", str(exp.out / "cache" / f"{name}-{meta['key']}.safetensors")]
                    if user is None else ["--model", model, *(["--weights", weights] if weights else []),
                                          *(["--mean", _csv(mean), "--std", _csv(std)] if mean is not None else [])])
            if outcome.winner is not None:
                chosen = trial_config(config, setting_of(outcome.winner))
                chosen.methods = [setting_of(outcome.winner).method]
                base = [*base, "--config", str(write_winner_config(out, name, seed, to_dict(chosen),
                                                                  to_dict(resolve(overrides={"preset": config.preset})))),
                        "--seed", str(seed)]
            block = search_block(outcome, trials, settings, name, seed, options, base)
            if outcome.winner is not None:
                rows += deliver_image(exp, subject, original, meta, seed, trials, outcome, block, options)
            blocks.append(block)
    exp.extra["search"] = blocks
    results = finish(exp, rows, started)
    write_search_files(results, out)
    return results


def _csv(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def user_subject(exp: Experiment, user, spec: str, weights: str | None, mean, std, progress: bool):
    """The user's image model as the driver's subject (as `unlearn --model` makes it)."""
    from ..data import to_float
    from ..user_run import UserSubject, check_user_run

    config = exp.config
    check_user_run(exp, user, mean, std)
    example = to_float(exp.splits(config.seeds[0]).retain_train.images[:2])
    identity = {"model": spec, "weights": storage.file_digest(weights) if weights else None, "mean": mean, "std": std}
    return UserSubject(user, config, exp.device, mean, std, example, fingerprint("user model", identity), progress,
                       flip=exp.flip)


def search_block(outcome: SearchOutcome, trials, settings: SearchSettings, name: str, seed: int,
                 options: SearchOptions, base: list[str]) -> dict[str, Any]:
    """What the results, the report and the winner's record say of one search; base: the arguments that name
    the model and data in the line that reproduces the winner without searching."""
    winner = outcome.winner
    return {"model": name, "seed": seed, "task": trials.task, "with_retrain": options.retrain,
            "budget_samples": settings.budget_samples, "budget_seconds": settings.budget_seconds,
            "patience": settings.patience,
            "retrain_cost_samples": trials.retrain_cost(), "spent_samples": outcome.spent,
            "seconds": outcome.seconds, "trials": [dataclasses.asdict(t) for t in outcome.trials],
            "winner": dataclasses.asdict(winner) if winner else None,
            "best": dataclasses.asdict(outcome.best) if outcome.best else None,
            "selection_ids": trials.ids["selection"], "verdict_ids": trials.ids["verdict"],
            "reproduce": reproduce_line(base, setting_of(winner)) if winner else None,
            "answer": answer(outcome, trials.retrain_cost(), estimated=not options.retrain)}


def deliver_image(exp: Experiment, subject, original, meta: dict[str, Any], seed: int, trials: ImageTrials,
                  outcome: SearchOutcome, block: dict[str, Any], options: SearchOptions) -> list[dict]:
    """The winner, run again through the driver on the verdict half, delivered with its record; its rows (the
    original's and Retrain's on the same half beside it)."""
    setting = setting_of(outcome.winner)
    config = trial_config(exp.config, setting)
    config.seeds = [seed]
    config.methods = (["retrain"] if options.retrain else []) + [setting.method]
    record_block = {k: v for k, v in block.items() if k not in ("trials", "best", "answer")} | {
        "trials": len(block["trials"])}
    verdict_exp = Experiment(config, exp.device, lambda e: VerdictImageTask(e, exp.task, {seed: trials.verdict_splits},
                                                                             record_block),
                             exp.progress, warnings=exp.warnings, registry_models=exp.registry_models)
    rows = verdict_exp.method_rows([trials.subject_for(config, exp.progress)], lambda s, seed_: (original, meta))
    exp.training_sec += verdict_exp.training_sec
    found = next((r for r in rows if r["method"] == setting.method), None)
    if found is not None:
        original_row = next(r for r in rows if r["method"] == "original")
        retrain_row = next((r for r in rows if r["method"] == "retrain"), None)
        held = judge_image(found, original_row, retrain_row)
        block["verdict_on_held_out"], block["passed_on_held_out"] = held.verdict, held.passed
        block["answer"] = answer(outcome, trials.retrain_cost(), held, estimated=not options.retrain)
    return charge_search([{**r, "search_split": "verdict"} for r in rows], setting.method, block)


def charge_search(rows: list[dict[str, Any]], method: str, block: dict[str, Any]) -> list[dict[str, Any]]:
    """The delivered method's rows carry the whole search's cost (every trial's training seconds and samples),
    not the winning trial's alone, which stays beside it (`winner_total_sec`, `winner_seconds`)."""
    for row in rows:
        if row.get("method") != method:
            continue
        for key in ("total_sec", "seconds"):
            if key in row:
                row[f"winner_{key}"], row[key] = row[key], block["seconds"]
        row["search_trials"], row["search_spent_samples"] = len(block["trials"]), block["spent_samples"]
    return rows


def write_search_files(results: dict[str, Any], out: Path) -> None:
    """search.json (every search with every trial), trials.csv, and the answers atop results.md."""
    from ..report.search import search_markdown, trials_csv

    blocks = results.get("search") or []
    storage.write_json(out / "search.json", {"searches": blocks})
    storage.write_text(out / "trials.csv", trials_csv(blocks))
    existing = (out / "results.md").read_text() if (out / "results.md").is_file() else ""
    storage.write_text(out / "results.md", search_markdown(blocks) + "\n\n" + existing)


__all__ = ["SearchOptions", "image_search"]
