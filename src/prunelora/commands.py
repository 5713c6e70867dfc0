"""The four commands as functions: validate everything first, then write under config.out."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import io
from .config import RunConfig
from .errors import UserError
from .methods import get_method
from .metrics.evaluate import collect_logits, metrics_from_logits
from .pipeline import Experiment, describe_model, finish, make_row, reproduce, save_logits, select_device

__all__ = ["evaluate", "reproduce", "train", "unlearn"]


def train(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or reuse) the original of each model and evaluate it; the checkpoint is copied to DIR."""
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), progress)
    rows = []
    for seed in config.seeds:
        for name in config.models:
            model, meta, model_rows = exp.original_rows(name, seed)
            io.save_model(model, exp.seed_dir(seed) / "models" / name / "original.safetensors", meta)
            rows += model_rows
    return finish(exp, rows, started)


def _checkpoint_experiment(config: RunConfig, checkpoint: Path, progress: bool):
    """Load the checkpoint, align the config with it, and check it fits the dataset."""
    model, meta = io.load_model(checkpoint)
    config.models = [meta["model"]]
    config.model_args = {meta["model"]: meta.get("model_args", {})}
    exp = Experiment(config, select_device(config.device), progress)
    shape = (exp.raw.num_classes, exp.raw.shape[0], exp.raw.shape[1])
    if shape != (meta["num_classes"], meta["in_channels"], meta["image_size"]):
        raise UserError(f"checkpoint {checkpoint} is for {meta['num_classes']} classes of {meta['in_channels']}x"
                        f"{meta['image_size']}px images, but {config.data.dataset} has {shape[0]} classes of "
                        f"{shape[1]}x{shape[2]}px (pass the dataset it was trained on)")
    return model.to(exp.device), meta, exp


def unlearn(config: RunConfig, checkpoint: Path, method: str, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    get_method(method)
    config.methods = [method]
    model, meta, exp = _checkpoint_experiment(config, checkpoint, progress)
    original_key = io.file_digest(checkpoint)
    rows = []
    for seed in config.seeds:
        rows += exp.stage_rows(meta["model"], method, model, original_key, seed)
    return finish(exp, rows, started)


def evaluate(config: RunConfig, checkpoint: Path, dump_logits: str | None, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    if dump_logits is not None and not dump_logits.endswith(".npz"):
        raise UserError(f"--dump-logits needs a .npz file name, got '{dump_logits}'")
    model, meta, exp = _checkpoint_experiment(config, checkpoint, progress)
    rows = []
    for seed in config.seeds:
        logits, labels = collect_logits(model, exp.splits(seed), config.eval_batch_size)
        if dump_logits is not None:
            save_logits(Path(dump_logits), logits, labels)
        metrics = metrics_from_logits(logits, labels, seed, config.mia_max_per_side)
        params = sum(p.numel() for p in model.parameters())
        rows.append(make_row(meta["model"], meta.get("method", "original"), meta.get("epochs"), metrics,
                             sec_per_epoch=None, total_sec=0.0, peak_memory_mb=None,
                             trainable_params=None, seed=seed, params=params, checkpoint=str(checkpoint),
                             model_desc=describe_model(meta["model"], meta.get("model_args", {}), params)))
    return finish(exp, rows, started)
