"""`unlearn --model hf:DIR | py:module:factory`: the user's own model as a subject of the stage driver.

The driver (driver/stages.py) runs, resumes, evaluates and records the stages exactly as for the
registry's models; this module says how a user's model is unlearned (the Python API's context: the
plan inferred from its structure, the per-epoch forgetting check and `until`), which module gives its
logits (api.as_classifier), and how it is delivered: the way the user loads it back.

Deliverables, per seed (and per request of a sequence, in r<k>/ below each folder):

    seed<s>/models/<model>/<method>/            the longest budget (or the epoch `until` stopped at)
        model/  (Hugging Face: a save_pretrained folder)  or  model.safetensors  (py: the state dict)
        adapter/                                 the PEFT adapter and its base (LoRA methods)
        prunelora.json                           what was done: method, epochs, history, metrics, plan
    seed<s>/models/<model>/<method>_e<k>/       every shorter budget k: model and prunelora.json
                                                 (the adapter is kept for the longest budget only)
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from . import storage
from .api import (
    EpochLog,
    UnlearnResult,
    as_classifier,
    check_labels_fit,
    plan_for,
    reinitialized,
    result_of,
    user_context,
    whole_classes,
)
from .api import plan as plan_of
from .config import RunConfig
from .data import Splits, to_float
from .driver import Delivery, Experiment, Outcome, StagePlace
from .errors import UserError
from .methods import get_method
from .methods.pruning import USE_MASK, removal_reason
from .models.outputs import PREFIX, unwrap
from .models.user_models import UserModel, load_factory, load_hf
from .runner import run_method


def method_settings(method_args: dict[str, dict[str, Any]], method: str) -> dict[str, Any]:
    """One method's settings from the config: those of its objective, then its own on top."""
    return {**(method_args.get(get_method(method).objective) or {}), **(method_args.get(method) or {})}


def check_user_run(exp: Experiment, user: UserModel, mean, std) -> None:
    """Refuse what cannot work before anything is written: input shape, remove mode's saved shapes."""
    example = to_float(exp.splits(exp.config.seeds[0]).retain_train.images[:2]).to(exp.device)
    if exp.config.unlearn.prune_mode == "remove" and any(get_method(m).prunes for m in exp.config.methods):
        check_remove_mode(user.model.to(exp.device), example, mean, std, exp.config.unlearn.prune_amount)
    # Planning runs the model once: an input it cannot take, or an output without logits, stops here.
    exp.extra["plans"] = {user.name: plan_of(user.model.to(exp.device), example, exp.config.methods, mean,
                                             std).to_dict()}
    exp.extra["user_model"] = user.describe()


def check_remove_mode(model, example, mean, std, amount: float) -> None:
    """Remove mode changes layer widths, which a saved Hugging Face config or a py: factory cannot rebuild, so
    the unlearned model is saved in the original shapes with the removed channels as exact zeros
    (methods/reinflate.py). A dry run here proves that exact for this architecture before anything runs."""
    model = copy.deepcopy(model)
    net, wrapped = as_classifier(model, example, mean, std)
    plan = plan_for(model, net, example, wrapped, None)
    plan = plan.prefixed(PREFIX) if wrapped else plan
    reason = removal_reason(net, plan.prune_layers, amount, plan.head, example, as_masks=False)  # asked for
    if reason:
        raise UserError(f"--prune-mode remove cannot be used on this model: {reason}{USE_MASK}")


def budget_history(history: list[dict[str, float]], epochs: int | None) -> list[dict[str, float]]:
    """The epochs of `history` that led to the budget `epochs` (None: the whole run). A run per budget
    (l1-sparse) restarts its epoch count: the budget's own run is the one that ends at it."""
    if epochs is None:
        return list(history)
    runs: list[list[dict[str, float]]] = []
    for entry in history:
        if not runs or entry["epoch"] <= runs[-1][-1]["epoch"]:
            runs.append([])
        runs[-1].append(entry)
    ending = [run for run in runs if run[-1]["epoch"] == epochs]
    if ending:
        return ending[0]
    return next(([e for e in run if e["epoch"] <= epochs] for run in runs if any(e["epoch"] == epochs for e in run)),
                list(history))


@dataclass
class UserSubject:
    """The user's model (hf: or py:) as the driver's subject."""

    user: UserModel
    config: RunConfig
    device: torch.device
    mean: list[float] | None
    std: list[float] | None
    example: torch.Tensor  # a few of the run's images: whether the model needs prunelora's wrapper
    key: str  # the original's fingerprint: the model's source, weights and normalisation
    progress: bool = True
    family: str = ""  # recipes follow the model's inferred plan, per method run
    flip: bool = True  # whether augmentation may mirror the images: the data's own (digits: no), as for registry models

    @property
    def name(self) -> str:
        return self.user.name

    def original(self) -> tuple[nn.Module, dict[str, Any]]:
        """The user's model as given: nothing trained, nothing cached."""
        training = {"sec_per_epoch": None, "total_sec": 0.0, "peak_memory_mb": None, "trainable_params": None}
        return self.user.model, {"key": self.key, "training": training}

    def fresh(self, splits: Splits, start: nn.Module) -> nn.Module:
        return reinitialized(start)

    def settings(self, method: str) -> RunConfig:
        """The Python API's configuration for one method: the run's unlearning settings, every budget."""
        cfg = self.config
        return RunConfig(unlearn=dataclasses.replace(cfg.unlearn, until_forget_acc=None), methods=[method],
                         method_args={method: method_settings(cfg.method_args, method)},
                         pretrain=dataclasses.replace(cfg.pretrain), precision=cfg.precision,
                         channels_last=cfg.channels_last)

    def run(self, method: str, start: nn.Module, splits: Splits, seed: int, desc: str) -> Outcome:
        """As prunelora.unlearn runs it, for every budget at once; each budget gets its own UnlearnResult."""
        chosen = get_method(method)
        retain, forget, test = splits.retain_train, splits.new_forget, splits.test_retain
        model = copy.deepcopy(start).to(retain.labels.device)
        example = to_float(retain.images[:2])
        net, wrapped = as_classifier(model, example, self.mean, self.std)
        check_labels_fit(net, example, {"retain": retain, "forget": forget, "test": test})
        config = self.settings(method)
        ctx, plan = user_context(config, model, net, example, wrapped, None, retain,
                                 forget if chosen.uses_forget else None, whole_classes(retain, forget) or None,
                                 flip=self.flip)
        until = self.config.unlearn.until_forget_acc
        log = EpochLog(retain, forget, test, until)
        run = run_method(method, net, retain, ctx, seed=seed, precision=config.precision,
                         channels_last=config.channels_last, cache_prefix=config.unlearn.cache_prefix,
                         progress=self.progress, on_epoch=log, desc=desc)
        if not log.history:  # a method that does not train (logit-mask): measured once
            log(0, run.snapshots[-1].model)
        class_wise = bool(whole_classes(retain, forget))
        results = [result_of(run, snap, plan, budget_history(log.history, snap.epochs), until, wrapped,
                             snap.total_sec, class_wise) for snap in run.snapshots]
        final = results[-1].warning
        return Outcome(run, [{"result": r} for r in results], [final] if final else [])

    def evaluated(self, model: nn.Module) -> nn.Module:
        return as_classifier(unwrap(model), self.example, self.mean, self.std)[0]

    def final(self, outcome: Outcome) -> nn.Module:
        return unwrap(outcome.run.snapshots[-1].model)

    def deliverable(self, place: StagePlace, method: str, epochs: int | None, last: bool) -> Path:
        folder = place.models / (method if last or epochs is None else f"{method}_e{epochs}")
        return folder / place.part if place.part else folder

    def save(self, path: Path, delivery: Delivery) -> dict[str, Any]:
        result: UnlearnResult = delivery.note["result"]
        save_user_result(path, self.user, result, delivery.splits, delivery.metrics, adapter=delivery.last)
        return {"forgotten": result.forgotten, "forget_target": result.target,
                "model_dir": str(path.relative_to(delivery.out))}

    def load(self, path: Path) -> nn.Module:
        if self.user.kind == "hf":
            return load_hf(str(path / "model"), self.progress).model.to(self.device)
        return load_factory(self.user.source, str(path / "model.safetensors")).model.to(self.device)

    def loader(self) -> dict[str, Any]:
        return {"kind": self.user.kind, "source": str(self.user.source), "mean": self.mean, "std": self.std}


def save_user_result(folder: Path, user: UserModel, result: UnlearnResult, splits, metrics: dict,
                     adapter: bool = True) -> None:
    """The unlearned model as the user loads it, its adapter (adapter=False: not for this budget), and what was
    done (prunelora.json)."""
    with storage.atomic_dir(folder) as tmp:
        model = result.in_original_shapes(copy.deepcopy(user.model))  # remove mode: zeros where channels went
        if user.kind == "hf":
            model.save_pretrained(str(tmp / "model"))
            processor = Path(user.source) / "preprocessor_config.json"
            if processor.is_file():
                shutil.copy(processor, tmp / "model" / processor.name)
        else:
            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
        if adapter:
            result.save_adapter(tmp / "adapter", template=copy.deepcopy(user.model))
        storage.write_json(tmp / "prunelora.json", {
            "model": user.describe(), "method": result.method, "epochs": result.epochs,
            "forget_class": splits.forget_class,
            "forget_class_name": splits.class_names[splits.forget_class] if splits.forget_class is not None else None,
            "scenario": splits.scenario,
            "forgotten": result.forgotten, "forget_target": result.target, "warning": result.warning,
            "history": result.history, "metrics": metrics, "plan": dataclasses.asdict(result.plan),
            "load": ("transformers.AutoModelForImageClassification.from_pretrained('model')" if user.kind == "hf"
                     else f"prunelora unlearn --model py:{user.source} --weights model.safetensors")})
