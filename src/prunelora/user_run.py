"""`unlearn --model hf:DIR | py:module:factory`: the user's own model on the user's data, end to end.

For each method asked: unlearn through the Python API (per-epoch forgetting check, `until`),
evaluate with the same metrics and attacks as `reproduce`, save the unlearned model the way the
user loads it (a `save_pretrained` folder for Hugging Face models, a safetensors state dict for
`py:` models), the PEFT adapter with its base, and a `prunelora.json` that says what was done.
Rows go into the same results.json / results.md / report.html as `reproduce`.
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from . import io
from .api import as_classifier, plan as plan_of, unlearn
from .data import to_float
from .errors import UserError
from .models.user_models import UserModel
from .pipeline import Experiment, describe_model, make_row


def unlearn_options(exp: Experiment) -> dict[str, Any]:
    """The config's unlearning settings as `prunelora.unlearn` options (its epochs are the longest budget)."""
    return {k: v for k, v in dataclasses.asdict(exp.config.unlearn).items() if k not in ("epochs", "until_forget_acc")}


def method_settings(method_args: dict[str, dict[str, Any]], method: str) -> dict[str, Any]:
    """One method's settings from the config: those of its objective, then its own on top."""
    from .methods import get_method

    return {**(method_args.get(get_method(method).objective) or {}), **(method_args.get(method) or {})}


def check_user_run(exp: Experiment, user: UserModel, mean, std) -> None:
    """Refuse what cannot work before anything is written: input shape, remove mode's saved shapes."""
    if exp.sequential:
        raise UserError("--scenario sequential runs on prunelora's own checkpoints (reproduce, unlearn --checkpoint); "
                        "with --model, use --scenario class or random")
    if exp.config.unlearn.prune_mode == "remove":
        raise UserError("--prune-mode remove changes layer widths, which a saved Hugging Face config or a py: "
                        "factory cannot rebuild: use --prune-mode mask here (or the Python API, which returns "
                        "the pruned model itself)")
    example = to_float(exp.splits(exp.config.seeds[0]).retain_train.images[:2]).to(exp.device)
    # Planning runs the model once: an input it cannot take, or an output without logits, stops here.
    exp.extra["plans"] = {user.name: plan_of(user.model.to(exp.device), example, exp.config.methods, mean,
                                             std).to_dict()}
    exp.extra["user_model"] = user.describe()


def user_rows(exp: Experiment, user: UserModel, mean, std) -> list[dict]:
    config, rows = exp.config, []
    params = sum(p.numel() for p in user.model.parameters())
    desc = describe_model(user.name, {}, params)
    for seed in config.seeds:
        splits = exp.splits(seed)
        example = to_float(splits.retain_train.images[:2])
        original, _ = as_classifier(user.model, example, mean, std)
        exp.references[(user.name, seed)] = original
        logits = exp.logits_path(user.name, "original", None, seed)
        rows.append(make_row(user.name, "original", None, exp.evaluate(original, seed, logits, name=user.name),
                             sec_per_epoch=None,
                             total_sec=0.0, peak_memory_mb=None, trainable_params=None, seed=seed, params=params,
                             model_desc=desc, logits_file=str(logits.relative_to(exp.out))))
        for method in config.methods:
            result = unlearn(copy.deepcopy(user.model), splits.retain_train, splits.forget_train, method=method,
                             epochs=max(config.unlearn.epochs), seed=seed, pretrain_epochs=config.pretrain.epochs,
                             test=splits.test_retain, until=config.unlearn.until_forget_acc, mean=mean, std=std,
                             progress=exp.progress, method_args=method_settings(config.method_args, method),
                             **unlearn_options(exp))
            if result.warning:
                exp.warnings.append(f"{user.name} {method}: {result.warning}")
            net, _ = as_classifier(result.model, example, mean, std)
            logits = exp.logits_path(user.name, method, result.epochs, seed)
            metrics = exp.evaluate(net, seed, logits, name=user.name)
            folder = exp.seed_dir(seed) / "models" / user.name / method
            save_user_result(folder, user, result, splits, metrics)
            rows.append(make_row(user.name, method, result.epochs, metrics,
                                 sec_per_epoch=result.seconds / max(1, result.epochs), total_sec=result.seconds,
                                 peak_memory_mb=result.peak_memory_mb, trainable_params=result.trainable_params,
                                 seed=seed, params=params, memory_kind=result.memory_kind, model_desc=desc,
                                 logits_file=str(logits.relative_to(exp.out)), forgotten=result.forgotten,
                                 forget_target=result.target, model_dir=str(folder.relative_to(exp.out))))
    return rows


def save_user_result(folder: Path, user: UserModel, result, splits, metrics: dict) -> None:
    """The unlearned model as the user loads it, its adapter, and what was done (prunelora.json)."""
    with io.atomic_dir(folder) as tmp:
        if user.kind == "hf":
            result.model.save_pretrained(str(tmp / "model"))
            processor = Path(user.source) / "preprocessor_config.json"
            if processor.is_file():
                shutil.copy(processor, tmp / "model" / processor.name)
        else:
            state = {k: v.detach().contiguous().cpu() for k, v in result.model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
        result.save_adapter(tmp / "adapter")
        io.write_json(tmp / "prunelora.json", {
            "model": user.describe(), "method": result.method, "epochs": result.epochs,
            "forget_class": splits.forget_class,
            "forget_class_name": splits.class_names[splits.forget_class] if splits.forget_class is not None else None,
            "scenario": splits.scenario,
            "forgotten": result.forgotten, "forget_target": result.target, "warning": result.warning,
            "history": result.history, "metrics": metrics, "plan": dataclasses.asdict(result.plan),
            "load": ("transformers.AutoModelForImageClassification.from_pretrained('model')" if user.kind == "hf"
                     else f"prunelora unlearn --model py:{user.source} --weights model.safetensors")})
