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

import torch
from safetensors.torch import save_file

from . import storage
from .api import as_classifier, unlearn
from .api import plan as plan_of
from .data import to_float
from .errors import UserError
from .methods import get_method
from .models.user_models import UserModel
from .pipeline import Experiment, describe_model, finish
from .rows import make_row


def unlearn_options(exp: Experiment) -> dict[str, Any]:
    """The config's unlearning settings as `prunelora.unlearn` options (its epochs are the longest budget)."""
    return {k: v for k, v in dataclasses.asdict(exp.config.unlearn).items() if k not in ("epochs", "until_forget_acc")}


def method_settings(method_args: dict[str, dict[str, Any]], method: str) -> dict[str, Any]:
    """One method's settings from the config: those of its objective, then its own on top."""
    from .methods import get_method

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
    from .api import _plan_for
    from .methods.pruning import remove_channels
    from .methods.reinflate import check_exact, reinflate
    from .models.outputs import PREFIX

    model = copy.deepcopy(model)
    net, wrapped = as_classifier(model, example, mean, std)
    plan = _plan_for(model, net, example, wrapped, None)
    plan = plan.prefixed(PREFIX) if wrapped else plan
    pruned = copy.deepcopy(net)
    _, removed = remove_channels(pruned, plan.prune_layers, amount, plan.head, example)
    back = reinflate(pruned, copy.deepcopy(net), removed)
    with torch.no_grad():
        scale = float(net.eval()(example).abs().max()) or 1.0
    gap = check_exact(pruned, back, example)
    if not gap <= 1e-4 * max(1.0, scale):
        raise UserError(f"--prune-mode remove cannot be written back into this architecture exactly (outputs differ "
                        f"by {gap:.3g}: a layer or group norm normalises over pruned channels); use --prune-mode mask")


def user_rows(exp: Experiment, user: UserModel, mean, std, started: float | None = None) -> list[dict]:
    """Rows of the original and of every method, per seed and request. In a sequence each request is
    applied to the model the previous one produced (Retrain retrains on the cumulative retain set), and
    the tables are written after every request."""
    config, rows = exp.config, []
    params = sum(p.numel() for p in user.model.parameters())
    desc = describe_model(user.name, {}, params)
    last = len(exp.requests)
    for seed in config.seeds:
        example = to_float(exp.splits(seed).retain_train.images[:2])
        original, _ = as_classifier(user.model, example, mean, std)
        exp.references[(user.name, seed)] = original
        chain = {method: user.model for method in config.methods}
        for request in range(1, last + 1):
            splits, fields = exp.splits(seed, request), exp.request_fields(seed, request)
            logits = exp.logits_path(user.name, "original", None, seed, request)
            metrics = exp.evaluate(original, seed, logits, request, name=user.name)
            rows.append(make_row(user.name, "original", None, metrics, sec_per_epoch=None, total_sec=0.0,
                                 peak_memory_mb=None, trainable_params=None, seed=seed, params=params,
                                 model_desc=desc, logits_file=str(logits.relative_to(exp.out)), **fields))
            for method in config.methods:
                result = unlearn(copy.deepcopy(chain[method]), splits.retain_train, splits.new_forget, method=method,
                                 epochs=max(config.unlearn.epochs), seed=seed, pretrain_epochs=config.pretrain.epochs,
                                 test=splits.test_retain, until=config.unlearn.until_forget_acc, mean=mean, std=std,
                                 progress=exp.progress, method_args=method_settings(config.method_args, method),
                                 **unlearn_options(exp))
                chain[method] = result.model
                if result.warning:
                    exp.warnings.append(f"{user.name} {method}: {result.warning}")
                net, _ = as_classifier(result.model, example, mean, std)
                logits = exp.logits_path(user.name, method, result.epochs, seed, request)
                metrics = exp.evaluate(net, seed, logits, request, name=user.name)
                folder = exp.seed_dir(seed) / "models" / user.name / method
                if exp.sequential:
                    folder = folder / exp.request_part(request)
                save_user_result(folder, user, result, splits, metrics)
                rows.append(make_row(user.name, method, result.epochs, metrics,
                                     sec_per_epoch=result.seconds / max(1, result.epochs), total_sec=result.seconds,
                                     peak_memory_mb=result.peak_memory_mb, trainable_params=result.trainable_params,
                                     seed=seed, params=params, memory_kind=result.memory_kind, model_desc=desc,
                                     rss_growth_mb=result.rss_growth_mb,
                                     logits_file=str(logits.relative_to(exp.out)), forgotten=result.forgotten,
                                     forget_target=result.target, model_dir=str(folder.relative_to(exp.out)),
                                     **fields, **{k: v for k, v in result.info.items()
                                                  if isinstance(v, (int, float, str, bool))}))
            if exp.sequential and request < last and started is not None:
                finish(exp, list(rows), started, partial=True)
    return rows


def save_user_result(folder: Path, user: UserModel, result, splits, metrics: dict) -> None:
    """The unlearned model as the user loads it, its adapter, and what was done (prunelora.json)."""
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
