"""A search's trials on the causal-LM task, and `prunelora search --task causal-lm`.

The holdout (examples never trained on: the membership evidence's reference) is split once, with the seed,
into a selection half (every trial is judged on it) and a verdict half (the winner's verdict, never seen by the
search). A trial runs the setting on the original through the one training loop under the search's sample cap,
measured on the forget set, the seeded retain draw and the selection half. Retrain's cost is the original's
recipe: pretrain.epochs passes over the retain set (its memorisation stop may end it sooner: an upper bound).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import run_folder
from ..config import fingerprint
from ..config.causal_lm import LMConfig, LMUnlearnConfig
from ..config.causal_lm import resolve as lm_resolve
from ..data.text.tokens import encode
from ..driver import Experiment, select_device
from ..driver.causal_lm import CausalLMTask
from ..errors import UserError
from ..metrics.causal_lm import measure as measures
from ..models.causal_lm.loading import quiet_transformers
from ..registry import CAUSAL_LM
from ..runner.causal_lm import unlearn_with
from ..train import capped, watched
from .command import (
    SearchOptions,
    answer,
    charge_search,
    reproduce_line,
    searched_methods,
    setting_of,
    write_search_files,
    write_winner_config,
)
from .engine import Search, SearchOutcome, SearchSettings
from .image import halves, trial_config
from .space import Setting, check_methods
from .target import Judgement, judge_causal_lm


def lm_trial_config(config: LMConfig, setting: Setting) -> LMConfig:
    """The run's configuration with a setting's values (method_args and unlearn.*): search/image.trial_config,
    which reads only the fields both tasks' configurations share."""
    return trial_config(config, setting)


class VerdictLMTask(CausalLMTask):
    """The causal-LM task of a run, its holdout the verdict half, its records carrying the search's block."""

    def __init__(self, exp: Experiment, parent: CausalLMTask, verdict_holdout: list, block: dict[str, Any]) -> None:
        self.__dict__.update(parent.__dict__)
        self.exp, self.config, self.block = exp, exp.config, block
        self.holdout = verdict_holdout
        self._splits = {}

    def record_facts(self, seed: int, request: int, start: nn.Module) -> dict[str, Any]:
        return {**super().record_facts(seed, request, start), "search": self.block}


class LMTrials:
    """The causal-LM task's trials for one seed (search/engine.py drives them)."""

    task = CAUSAL_LM
    list_epochs = False
    unlearn_cls = LMUnlearnConfig

    def __init__(self, task: CausalLMTask, original: nn.Module, seed: int, retrain: nn.Module | None) -> None:
        self.lm, self.original, self.seed = task, original, seed
        splits = task.splits(seed)
        chosen, held = halves(len(splits.holdout), seed)
        self.selection_holdout = [splits.holdout[i] for i in chosen]
        self.verdict_holdout = [splits.holdout[i] for i in held]
        self.ids = {"selection": [ex.id for ex in self.selection_holdout],
                    "verdict": [ex.id for ex in self.verdict_holdout]}
        self.splits = splits
        self.last_cost = 0
        self.original_row = self.measure(original)
        self.retrain_row = self.measure(retrain) if retrain is not None else None

    def sets(self) -> dict[str, list]:
        sets = self.lm.sets(self.seed)
        return {**sets, "holdout": self.selection_holdout}

    def measure(self, model: nn.Module) -> dict[str, Any]:
        d = self.lm.config.data
        formats, attack = self.lm.robustness(self.seed)
        return measures.measure(model, self.lm.tokenizer, self.sets(), d.max_length, self.lm.exp.device,
                                d.max_new_tokens, d.prompt_template, formats, attack)["summary"]

    def default_epochs(self) -> int:
        return int(self.lm.config.unlearn.epochs)

    def retrain_cost(self) -> int:
        return int(self.lm.config.pretrain.epochs * len(self.splits.retain))

    def smallest_step(self) -> int:
        return max(1, len(self.splits.forget))

    def estimate(self, setting: Setting) -> int:
        """An upper bound of a setting's samples: its epochs over the forget set with a retain batch beside each
        forget batch (the forgetting objectives), or over the retain set (retain finetuning)."""
        epochs = int(setting.unlearn.get("epochs", self.default_epochs()))
        return int(epochs * (len(self.splits.retain) + 2 * len(self.splits.forget)))

    def run(self, setting: Setting, limit: int, report) -> tuple[dict[str, Any], int, float, nn.Module]:
        config = lm_trial_config(self.lm.config, setting)
        device, d = self.lm.exp.device, config.data
        retain = encode(self.lm.tokenizer, self.splits.retain, d.max_length, device, d.prompt_template)
        forget = encode(self.lm.tokenizer, self.splits.forget, d.max_length, device, d.prompt_template)
        target = self.target_prob()
        probe = forget.rows(torch.arange(min(64, len(forget)), device=device))

        def watch(epoch: int, model: nn.Module) -> None:
            from ..objectives.causal_lm.base import answer_nll

            was = model.training
            model.eval()
            with torch.no_grad():
                total, counts = answer_nll(model, probe)
            model.train(was)
            report(epoch, abs(float(torch.exp(-(total / counts.clamp(min=1))).mean()) - target))

        method = self.lm.method(setting.method)
        started = time.perf_counter()
        with capped(limit) as cap:
            try:
                with watched(watch):
                    run = unlearn_with(method, self.original, retain, forget, config, self.seed, progress=False)
            finally:
                self.last_cost = cap.used
        seconds = time.perf_counter() - started
        model = run.delivered()
        return self.measure(model), cap.used, seconds, model

    def target_prob(self) -> float:
        """The forget answers' probability a passing model is near: Retrain's, else unseen text's."""
        ref = self.retrain_row or self.original_row
        key = "forget_prob" if self.retrain_row is not None else "holdout_prob"
        value = ref.get(key)
        return float(value) if value is not None and np.isfinite(value) else 0.0

    def judge(self, row: dict[str, Any]) -> Judgement:
        return judge_causal_lm(row, self.original_row, self.retrain_row, len(self.splits.forget),
                               len(self.selection_holdout))


def lm_search(yaml_path: str | None, flags: dict[str, Any], options: SearchOptions, *, overwrite: bool = False,
              progress: bool = True, say=print) -> dict[str, Any]:
    """`prunelora search --task causal-lm`: a search per seed on the user's model (or the embedded benchmark)."""
    from ..commands_causal_lm import config_for

    options.check()
    quiet_transformers()
    config = config_for("reproduce", yaml_path, {**flags, "methods": flags.get("methods") or ["retrain"]})
    requested = list(flags.get("methods") or [])
    methods = searched_methods(requested, CAUSAL_LM)
    check_methods(methods, LMUnlearnConfig)
    config.methods = ["retrain"] if options.retrain else ["finetune"]  # the task's own check needs one
    identity_extra = dataclasses.asdict(options) | {"methods": [m.name for m in methods]}
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), lambda e: CausalLMTask(e, "search"), progress)
    task: CausalLMTask = exp.task
    if len(task.holdout) < 2:
        raise UserError("search judges every trial on held-out examples and its winner on other ones, never trained "
                        f"on: give --holdout a .jsonl of at least 2 such examples ({len(task.holdout)} given)")
    task.check_memorised()
    identity = {**task.identity(), "search": identity_extra}
    config.out = config.out if flags.get("out") else f"runs/search-lm/{fingerprint(identity)[:8]}"
    exp.out = Path(config.out)
    run_folder.claim(exp.out, "search-causal-lm", identity, overwrite,
                     reads=tuple(p for p in (config.model.model and config.model.model.removeprefix("hf:"),
                                             config.data.dataset, config.data.holdout, config.data.forget) if p))
    task.write_data()
    storage_url = options.storage or f"sqlite:///{(exp.out / 'search.db').resolve()}"
    subject = task.subject()
    rows, blocks = [], []
    for seed in config.seeds:
        original, meta = task.original(subject, seed)
        retrain = None
        if options.retrain:
            _, final, _ = exp.stage(subject, "retrain", lambda model=original: model, meta["key"], seed)
            retrain = final()
        trials = LMTrials(task, original, seed, retrain)
        study = f"{fingerprint(identity)}-seed{seed}"
        settings = SearchSettings(trials.retrain_cost() if options.budget == "retrain" else None,
                                  options.budget_seconds(), options.trials, storage_url, study, seed,
                                  options.patience)
        say(f"searching seed {seed}: {len(methods)} methods")
        outcome = Search(trials, methods, settings, say).run()
        base, verb = ["--task causal-lm"], "unlearn" if config.model.model else "reproduce"
        if outcome.winner is not None:
            chosen = lm_trial_config(config, setting_of(outcome.winner))
            base += ["--config", str(write_winner_config(exp.out, subject.name, seed, dataclasses.asdict(chosen),
                                                        dataclasses.asdict(lm_resolve(None, {"preset": config.preset})))),
                     "--seed", str(seed)]
        block = lm_block(outcome, trials, settings, subject.name, seed, options, base, verb)
        if outcome.winner is not None:
            rows += deliver_lm(exp, task, subject, original, meta, seed, trials, outcome, block, options)
        blocks.append(block)
    exp.extra["search"] = blocks
    results = task.finish(exp, rows, started)
    results["search"] = blocks
    write_search_files(results, exp.out)
    say("\n".join(b["answer"] for b in blocks))
    return results


def lm_block(outcome: SearchOutcome, trials: LMTrials, settings: SearchSettings, name: str, seed: int,
             options: SearchOptions, base: list[str], verb: str = "unlearn") -> dict[str, Any]:
    winner = outcome.winner
    return {"model": name, "seed": seed, "task": CAUSAL_LM, "with_retrain": options.retrain,
            "budget_samples": settings.budget_samples, "budget_seconds": settings.budget_seconds,
            "patience": settings.patience,
            "retrain_cost_samples": trials.retrain_cost(), "spent_samples": outcome.spent, "seconds": outcome.seconds,
            "trials": [dataclasses.asdict(t) for t in outcome.trials],
            "winner": dataclasses.asdict(winner) if winner else None,
            "best": dataclasses.asdict(outcome.best) if outcome.best else None,
            "selection_ids": trials.ids["selection"], "verdict_ids": trials.ids["verdict"],
            "reproduce": reproduce_line(base, setting_of(winner), verb) if winner else None,
            "answer": answer(outcome, trials.retrain_cost(), estimated=not options.retrain)}


def deliver_lm(exp: Experiment, task: CausalLMTask, subject, original, meta, seed: int, trials: LMTrials,
               outcome: SearchOutcome, block: dict[str, Any], options: SearchOptions) -> list[dict]:
    """The winner, run again through the driver with the verdict half as its holdout, delivered with its record."""
    setting = setting_of(outcome.winner)
    config = lm_trial_config(task.config, setting)
    config.seeds = [seed]
    config.methods = (["retrain"] if options.retrain else []) + [setting.method]
    record_block = {k: v for k, v in block.items() if k not in ("trials", "best", "answer")} | {
        "trials": len(block["trials"])}
    verdict_exp = Experiment(config, exp.device, lambda e: VerdictLMTask(e, task, trials.verdict_holdout,
                                                                         record_block), exp.progress,
                             warnings=exp.warnings)
    verdict_exp.out = exp.out
    verdict_subject = dataclasses.replace(subject, task=verdict_exp.task)
    rows = verdict_exp.method_rows([verdict_subject], lambda s, seed_: (original, meta))
    found = next((r for r in rows if r["method"] == setting.method), None)
    if found is not None:
        splits = verdict_exp.task.splits(seed)
        original_row = next((r for r in rows if r["method"] == "original"), None)
        retrain_row = next((r for r in rows if r["method"] == "retrain"), None)
        held = judge_causal_lm(found, original_row, retrain_row, len(splits.forget), len(splits.holdout))
        block["verdict_on_held_out"], block["passed_on_held_out"] = held.verdict, held.passed
        block["answer"] = answer(outcome, trials.retrain_cost(), held, estimated=not options.retrain)
    return charge_search([{**r, "search_split": "verdict"} for r in rows], setting.method, block)
