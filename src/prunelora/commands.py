"""The four commands: resolve the config, check everything, claim the output folder, then run.

A command on a checkpoint takes the checkpoint's own context (dataset, data subset, model, forget
class, seed) unless the user says otherwise; a flag that contradicts the checkpoint's identity is
a user error, one that changes what is measured is a warning in the results. Nothing is written
before every check has passed, and never into another run's folder (run_folder.claim).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from . import run_folder, storage
from .adapters import checkpoint_meta, load_checkpoint
from .api import plan as plan_of
from .config import RunConfig, fingerprint, load_yaml, merge, resolve
from .data import class_splits, load_dataset, to_float
from .data.load import resizable
from .driver import Experiment, ImageTask, describe_model, finish, normalise_methods, select_device
from .errors import UserError
from .machine import LoadProbe, set_threads
from .methods import get_method, method_names
from .models.user_models import UserModel, load_user_model
from .rows import make_row
from .user_run import UserSubject, check_user_run

__all__ = ["checkpoint_context", "run"]

COMMANDS = ("reproduce", "train", "unlearn", "evaluate")


def checkpoint_context(meta: dict[str, Any]) -> dict[str, Any]:
    """The config values a checkpoint records about itself, as a nested dict for config.resolve."""
    data = {"dataset": meta["dataset"]} if meta.get("dataset") else {}
    data.update({k: v for k, v in (meta.get("data") or {}).items()
                 if k in ("data_root", "train_per_class", "test_per_class")})
    if meta.get("forget_class") is not None:
        data["forget_class"] = meta["forget_class"]
    context: dict[str, Any] = {"models": [meta["model"]], "model_args": {meta["model"]: meta.get("model_args", {})},
                               "data": data}
    if meta.get("seed") is not None:
        context["seeds"] = [meta["seed"]]
    return context


def _conflicts(context: dict[str, Any], explicit: dict[str, Any], checkpoint: Path) -> list[str]:
    """Raise on flags that contradict what the checkpoint is; return warnings for what it changes."""
    model = context["models"][0]
    data, asked = context["data"], explicit.get("data") or {}
    if "dataset" in asked and "dataset" in data and asked["dataset"] != data["dataset"]:
        raise UserError(f"checkpoint {checkpoint} was trained on {data['dataset']}, not {asked['dataset']} "
                        "(leave out --dataset: the checkpoint's is used)")
    if "models" in explicit and list(explicit["models"]) != [model]:
        raise UserError(f"checkpoint {checkpoint} holds a '{model}' model, not {', '.join(explicit['models'])} "
                        "(leave out --models: the checkpoint's model is used)")
    asked_args = (explicit.get("model_args") or {}).get(model)
    if asked_args is not None and any(context["model_args"][model].get(k) != v for k, v in asked_args.items()):
        raise UserError(f"checkpoint {checkpoint} is a '{model}' with {context['model_args'][model]}, "
                        f"not {asked_args} (leave out model_args: the checkpoint's are used)")
    warnings = []
    for key in ("train_per_class", "test_per_class"):
        if key in asked and key in data and asked[key] != data[key]:
            warnings.append(f"the checkpoint's run used data.{key}={data[key]}, this run {asked[key]}: "
                            "its splits are not the ones the checkpoint was trained and evaluated on")
    seeds = explicit.get("seeds")
    if seeds is not None and "seeds" in context and data.get("train_per_class") is not None \
            and list(seeds) != context["seeds"]:
        warnings.append(f"the checkpoint's training subset was drawn with seed {context['seeds'][0]}; seeds "
                        f"{', '.join(map(str, seeds))} draw other subsets, so its retain and forget sets differ")
    return warnings


def _default_out(command: str, config: RunConfig, identity: dict[str, Any]) -> str:
    """Each command's own default folder; checkpoint commands get one per checkpoint and configuration."""
    if command in ("reproduce", "train"):
        return f"runs/{command}"
    label = config.models[0] + (f"-{config.methods[0]}" if command == "unlearn" else "")
    return f"runs/{command}/{label}-{fingerprint(identity)[:8]}"


def run(command: str, yaml_path: str | None, flags: dict[str, Any], *, checkpoint: str | None = None,
        method: str | None = None, dump_logits: str | None = None, overwrite: bool = False,
        progress: bool = True, model: str | None = None, weights: str | None = None,
        mean: list[float] | None = None, std: list[float] | None = None) -> dict[str, Any]:
    """Run one command from the user's config file and flags; returns the results written."""
    if command not in COMMANDS:
        raise UserError(f"unknown command '{command}' (choose from: {', '.join(COMMANDS)})")
    if model is not None:
        if dump_logits is not None:
            raise UserError("--dump-logits goes with --checkpoint; with --model every split's logits are written "
                            "under DIR/logits/")
        methods = (method or "prunelora") if command == "unlearn" else ""
        return _run_user_model(command, yaml_path, flags, model, weights, methods, mean, std, overwrite, progress)
    explicit = merge(load_yaml(yaml_path), flags)
    context, warnings, meta, path, loaded = None, [], None, None, None
    if checkpoint is not None:
        path = Path(checkpoint)
        meta = checkpoint_meta(path)
        if "model" not in meta:
            raise UserError(f"checkpoint {path} metadata lacks its model name")
        loaded = load_checkpoint(path)[0]  # checked against its own tensors before its metadata builds anything
        context = checkpoint_context(meta)
        warnings = _conflicts(context, explicit, path)
    config = resolve(yaml_path=yaml_path, overrides=flags, context=context)
    refuse_shadows(command, config)
    if method is not None:
        get_method(method)
        config.methods = [method]
    normalise_methods(config)
    if dump_logits is not None and not dump_logits.endswith(".npz"):
        raise UserError(f"--dump-logits needs a .npz file name, got '{dump_logits}'")
    identity = config.identity()
    digest = storage.file_digest(path) if path is not None else None
    if digest is not None:
        identity["checkpoint"] = digest
    if dump_logits is not None:
        identity["dump_logits"] = dump_logits
    config.out = config.out or _default_out(command, config, identity)
    probe = LoadProbe(set_threads(config.threads))
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), ImageTask, progress, probe=probe, warnings=warnings)
    forgot = meta.get("forget_class") if meta is not None else None
    if forgot is not None and config.data.forget_class != forgot:  # compared as indices, names resolved
        warnings.append(f"the checkpoint forgot class {forgot}, but this run's forget class is "
                        f"{config.data.forget_class}: UA and MIA-Efficacy measure class {config.data.forget_class}")
    model = _checked_checkpoint(exp, path, loaded, meta) if path is not None else None
    if meta is not None:
        warnings += _subset_warnings(exp, meta)
    run_folder.claim(config.out, command, identity, overwrite, targets=(dump_logits,) if dump_logits else (),
                     reads=(path, config.data.dataset, config.data.data_root, *(config.data.forget or ())))
    if command == "reproduce":
        rows = exp.reproduce_rows()
    elif command == "train":
        rows = _train(exp)
    elif command == "unlearn":
        rows = _unlearn(exp, model, meta, digest, method)
    else:
        rows = _evaluate(exp, model, meta, path, dump_logits)
    return finish(exp, rows, started)


def refuse_shadows(command: str, config: RunConfig) -> None:
    """U-LiRA trains its own shadow originals with the registry's models: reproduce alone can."""
    if config.evidence.ulira and command != "reproduce":
        raise UserError(f"--ulira (evidence.ulira) runs with reproduce, which trains the shadow originals; "
                        f"{command} cannot")


def _subset_warnings(exp: Experiment, meta: dict[str, Any]) -> list[str]:
    """A checkpoint trained on another training subset than this run's (splits.subset_key: named samples forced
    into one of them): the checkpoint may never have seen some of the samples this run asks it to forget."""
    trained = (meta.get("data") or {}).get("subset_key")
    current = exp.splits(exp.config.seeds[0]).subset_key
    if current == trained:
        return []
    per_class = exp.config.data.train_per_class
    if current is None:
        return [f"the checkpoint was trained on a training subset that named samples were forced into, this run on "
                f"the seeded draw of --train-per-class {per_class}: its retain and forget sets are not the ones the "
                "checkpoint was trained on"]
    return [f"the checkpoint was trained on another training subset than this run's (--train-per-class {per_class} "
            "with the samples --forget names always in it): it may never have seen some of the samples it is asked "
            "to forget"]


def _checked_checkpoint(exp: Experiment, checkpoint: Path, model, meta: dict[str, Any]):
    """The loaded checkpoint (a file, or a saved adapter folder), if it fits the dataset."""
    shape = (exp.raw.num_classes, exp.raw.shape[0], exp.raw.shape[1])
    if shape != (meta["num_classes"], meta["in_channels"], meta["image_size"]):
        raise UserError(f"checkpoint {checkpoint} is for {meta['num_classes']} classes of {meta['in_channels']}x"
                        f"{meta['image_size']}px images, but {exp.config.data.dataset} has {shape[0]} classes of "
                        f"{shape[1]}x{shape[2]}px (pass the dataset it was trained on)")
    return model.to(exp.device)


def _train(exp: Experiment) -> list[dict]:
    """Train (or reuse) the original of each model and evaluate it; the checkpoint is copied to DIR."""
    rows = []
    for seed in exp.config.seeds:
        for name in exp.config.models:
            model, meta = exp.original(name, seed)
            model_rows = exp.original_rows(exp.subject(name), seed, model, meta)
            storage.save_model(model, exp.seed_dir(seed) / "models" / name / "original.safetensors", meta)
            rows += model_rows
    return rows


def _unlearn(exp: Experiment, model, meta: dict, original_key: str, method: str) -> list[dict]:
    """The method on the checkpoint, request after request (one, unless the scenario is sequential)."""
    rows, subject = [], exp.subject(meta["model"])
    for seed in exp.config.seeds:
        exp.references[(meta["model"], seed)] = model
        current, key = (lambda: model), original_key
        for request in range(1, len(exp.requests) + 1):
            stage, current, key = exp.stage(subject, method, current, key, seed, request)
            rows += stage
    return rows


def _evaluate(exp: Experiment, model, meta: dict, checkpoint: Path, dump_logits: str | None) -> list[dict]:
    config, rows = exp.config, []
    params = sum(p.numel() for p in model.parameters())
    for seed in config.seeds:
        metrics = exp.evaluate(model, seed, Path(dump_logits) if dump_logits is not None else None)
        rows.append(make_row(meta["model"], meta.get("method", "original"), meta.get("epochs"), metrics,
                             sec_per_epoch=None, total_sec=0.0, peak_memory_mb=None,
                             trainable_params=None, seed=seed, params=params, checkpoint=str(checkpoint),
                             model_desc=describe_model(meta["model"], meta.get("model_args", {}), params),
                             **exp.request_fields(seed, 1)))
    return rows


def _run_user_model(command: str, yaml_path: str | None, flags: dict[str, Any], spec: str, weights: str | None,
                    methods: str, mean: list[float] | None, std: list[float] | None, overwrite: bool,
                    progress: bool) -> dict[str, Any]:
    """`unlearn|evaluate --model hf:DIR | py:...`: the user's model, the methods asked for (none for evaluate).

    Its stages run through the same driver as the registry's models (user_run.UserSubject): resumed, and
    evaluated at every budget."""
    config = resolve(yaml_path=yaml_path, overrides=flags)
    refuse_shadows(command, config)
    config.methods = [m.strip() for m in methods.split(",") if m.strip()]
    normalise_methods(config, needed=command == "unlearn")
    for name in config.methods:
        get_method(name)
    check_normalisation(mean, std)
    user = load_user_model(spec, weights, progress=progress)
    mean, std = (mean, std) if mean is not None or std is not None else (user.mean, user.std)
    adopt_input_size(config, user)
    config.models = [user.name]
    identity = config.identity()
    model_identity = {"model": spec, "weights": storage.file_digest(weights) if weights else None, "mean": mean,
                      "std": std, "source": storage.file_digest(spec[3:]) if spec.startswith("hf:")
                      and Path(spec[3:]).exists() else spec}
    identity.update(model_identity)
    config.out = config.out or f"runs/{command}/{user.name}-{fingerprint(identity)[:8]}"
    probe = LoadProbe(set_threads(config.threads))
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), ImageTask, progress, probe=probe, registry_models=False,
                     unlearns=command == "unlearn")
    check_user_run(exp, user, mean, std)
    run_folder.claim(config.out, command, identity, overwrite,
                     reads=(spec.removeprefix("hf:"), weights, config.data.dataset, config.data.data_root,
                            *(config.data.forget or ())))
    example = to_float(exp.splits(config.seeds[0]).retain_train.images[:2])
    subject = UserSubject(user, config, exp.device, mean, std, example, fingerprint("user model", model_identity),
                          progress, flip=exp.flip)
    rows = exp.method_rows([subject], lambda _, seed: subject.original(), started)
    return finish(exp, rows, started)


def adopt_input_size(config: RunConfig, user: UserModel) -> None:
    """A user's model is fed as its own image processor feeds it: data prunelora can resize (an image folder, a
    datasets folder, digits) goes to the model's input side unless --image-size names one (in the config, hence
    in the run's fingerprint and record)."""
    if config.data.image_size is None and user.image_size and resizable(config.data.dataset):
        config.data.image_size = user.image_size


def check_normalisation(mean: list[float] | None, std: list[float] | None) -> None:
    """--mean and --std: finite numbers, std positive (a zero std divides every pixel by zero)."""
    for flag, values in (("--mean", mean), ("--std", std)):
        if values is not None and (not values or not all(math.isfinite(v) for v in values)):
            raise UserError(f"{flag} needs finite numbers, one per channel, got {values}")
    if std is not None and any(v <= 0 for v in std):
        raise UserError(f"--std needs positive numbers (each channel's standard deviation), got {std}")
    if mean is not None and std is not None and len(mean) != len(std):
        raise UserError(f"--mean has {len(mean)} values and --std {len(std)}: give one per channel for both")


def plan(yaml_path: str | None, flags: dict[str, Any], *, checkpoint: str | None = None, model: str | None = None,
         weights: str | None = None, mean: list[float] | None = None, std: list[float] | None = None) -> str:
    """The plan report of a checkpoint or a user's model on the configured data's images (nothing is written)."""
    if model is not None:
        user = load_user_model(model, weights)
        net = user.model
        mean, std = (mean, std) if mean is not None or std is not None else (user.mean, user.std)
        config = resolve(yaml_path=yaml_path, overrides=flags)
        adopt_input_size(config, user)
    else:
        path = Path(checkpoint)
        net, meta = load_checkpoint(path)
        config = resolve(yaml_path=yaml_path, overrides=flags, context=checkpoint_context(meta))
    methods = method_names(flags["methods"]) if flags.get("methods") else None
    raw = load_dataset(config.data.dataset, config.data.data_root, config.data.download, stream=config.data.stream,
                       image_size=config.data.image_size)
    splits = class_splits(raw, config.data.forget_class, 2, 1, 0, stream=config.data.stream)
    return str(plan_of(net, to_float(splits.retain_train.images[:2]), methods, mean, std))
