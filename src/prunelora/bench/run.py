"""The whole benchmark: every (model, method, prune mode) of a RunConfig and the bench's options, measured on
one retain set, written to bench.json and bench.md."""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import run_folder, storage
from ..config import PRESETS, RunConfig, resolve, validate
from ..data import ImageSet, RawDataset, Splits, class_splits, load_dataset
from ..data.scenarios import request_splits, requests_of
from ..driver import select_device
from ..errors import UserError
from ..machine import LoadProbe, facts, free_threads, matmul_flops_per_sec, set_threads
from ..methods import get_method
from ..models import build_model, get_spec
from .measure import Variant, add_ratios, cap_utilisation, measure_variant, prunes
from .options import PRUNE_MODES, BenchOptions
from .report import markdown

DEFAULT_TRAIN_PER_CLASS = 500  # the cpu preset's subset: 4500 retain images on a 10-class set, where none is set
DEFAULT_OUT = "runs/bench"
BENCH_FILE = "bench.json"
TABLE_FILE = "bench.md"


def model_args(config: RunConfig) -> dict[str, dict[str, Any]]:
    """Each benchmarked model's architecture arguments; arguments that differ from the preset's for a model
    that is not benchmarked are a mistake (a typo in --models or in --set model_args.NAME...)."""
    preset = PRESETS[config.preset].get("model_args", {})
    asked = {name: args for name, args in config.model_args.items() if args != preset.get(name)}
    unknown = sorted(set(asked) - set(config.models))
    if unknown:
        raise UserError(f"model arguments given for '{unknown[0]}', which is not benchmarked (models: "
                        f"{', '.join(config.models)})")
    return {name: dict(config.model_args.get(name, {})) for name in config.models}


def check(config: RunConfig, options: BenchOptions) -> None:
    """The benchmark's own mistakes (the config's were refused when it was resolved)."""
    if not options.methods:
        raise UserError("at least one method is needed (for example --methods finetune,lora)")
    for name in options.methods:
        if get_method(name).uses_forget or get_method(name).class_only:
            raise UserError(f"bench times the retain-only methods; {name} draws on the forget set (its cost is in "
                            "reproduce's RTE and Total columns)")
    bad = [m for m in options.prune_modes if m not in PRUNE_MODES]
    if bad or not options.prune_modes:
        raise UserError(f"unknown prune mode '{bad[0] if bad else ''}' (choose from: {', '.join(PRUNE_MODES)})")
    if options.min_timed_epochs < 1:
        raise UserError(f"min_timed_epochs must be at least 1, got {options.min_timed_epochs}")
    if options.timed_epochs < options.min_timed_epochs:
        raise UserError(f"timed epochs must be at least {options.min_timed_epochs} (the median of several), got "
                        f"{options.timed_epochs}")
    if options.warmup_epochs < 0:
        raise UserError(f"warm-up epochs cannot be negative, got {options.warmup_epochs}")
    if options.matmul_size <= 0 or options.matmul_repeats <= 0:
        raise UserError(f"matmul size and repeats must be positive, got {options.matmul_size} and "
                        f"{options.matmul_repeats}")
    if config.data.stream and config.channels_last:
        raise UserError("--channels-last lays out the images held in memory: leave out --stream to use it")


def _with_unlearn(config: RunConfig, **changes: Any) -> RunConfig:
    """The config with unlearning settings changed, checked again."""
    changed = dataclasses.replace(config, unlearn=dataclasses.replace(config.unlearn, **changes))
    validate(changed)
    return changed


def run(config: RunConfig, options: BenchOptions | None = None, *, out: str | Path | None = DEFAULT_OUT,
        progress: bool = False, log: Callable[[str], None] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Benchmark every (model, method, prune mode); write bench.json and bench.md under `out` (None: no files).

    The config gives the models and their sizes, the data (its subset, or DEFAULT_TRAIN_PER_CLASS images per
    class where it takes all), the device, precision, layout and seed (the first); its unlearning settings are
    timed over options.warmup_epochs + options.timed_epochs epochs. Returns {"machine", "settings", "matmul",
    "rows", "markdown", ...}. Every row has all COLUMNS keys: a number, or None with the reason in
    row["na"][key]. Raises UserError for user mistakes, before anything is written.
    """
    options = options or BenchOptions()
    started = time.perf_counter()
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    options = dataclasses.replace(options, methods=list(dict.fromkeys(options.methods)),
                                  prune_modes=list(dict.fromkeys(options.prune_modes)))
    models, methods, prune_modes = list(dict.fromkeys(config.models)), options.methods, options.prune_modes
    check(config, options)
    train_per_class = config.data.train_per_class or DEFAULT_TRAIN_PER_CLASS
    args = model_args(config)
    specs = {name: get_spec(name, args[name]) for name in models}
    epochs = options.warmup_epochs + options.timed_epochs
    config = _with_unlearn(config, epochs=[epochs])
    dev = select_device(config.device)
    data = config.data
    seed, channels_last = config.seeds[0], config.channels_last
    raw = load_dataset(data.dataset, data.data_root, allow_download=False, stream=data.stream, id_column=data.id_column,
                       image_size=data.image_size)
    splits = bench_splits(raw, config, train_per_class, seed, dev)
    retain = splits.retain_train
    if len(retain) == 0:
        raise UserError("the retain set is empty (raise --train-per-class)")
    if channels_last:  # batches gathered from it keep the layout (indexing and .float() preserve it)
        retain = ImageSet(retain.images.contiguous(memory_format=torch.channels_last), retain.labels)
    channels, size, _ = splits.image_shape

    def builder(name: str):
        def fresh() -> nn.Module:
            return build_model(name, splits.num_classes, channels, size, splits.mean, splits.std, args[name])
        return fresh

    for name in models:  # refuse bad architecture arguments before anything is measured
        builder(name)()
    probe = LoadProbe(torch.get_num_threads())
    if out is not None:  # never over another run's results (a bench with the same settings replaces its own)
        identity = {"config": config.identity(), "options": dataclasses.asdict(options), "device": str(dev),
                    "train_per_class": train_per_class, "channels_last": channels_last, "model_args": args}
        run_folder.claim(out, "bench", identity, overwrite)
    machine = facts(dev)
    log(f"[bench] {machine['device_name']} ({machine['threads']} threads), {data.dataset}: "
        f"{len(retain)} retain images, {options.warmup_epochs} warm-up + {options.timed_epochs} timed epochs")
    matmul = matmul_flops_per_sec(dev, options.matmul_size, options.matmul_repeats)
    log(f"[bench] fp32 peak: {matmul['flops_per_sec'] / 1e9:.1f} GFLOP/s ({matmul['kernel']})")

    rows: list[dict[str, Any]] = []
    for name in models:
        spec = specs[name]
        torch.manual_seed(seed)
        original = builder(name)().to(dev)
        for method in methods:
            for mode in (prune_modes if prunes(method) else [None]):
                variant = Variant(name, method, mode)
                cfg = config if mode is None else _with_unlearn(config, prune_mode=mode)
                row = measure_variant(variant, original, cfg, spec.plan, spec.family, builder(name), retain,
                                      seed=seed, warmup_epochs=options.warmup_epochs,
                                      timed_epochs=options.timed_epochs, channels_last=channels_last,
                                      compile_model=options.compile, progress=progress,
                                      matmul_rate=matmul["flops_per_sec"])
                row["model_args"] = args[name]
                rows.append(row)
                if row["status"] == "ok":
                    log(f"[bench] {name} {variant.label}: {row['sec_per_epoch']:.3f} s/epoch, "
                        f"{row['flops_per_image'] / 1e6:.2f} MFLOP/img, {row['peak_memory_mb']:.1f} MB")
                else:
                    log(f"[bench] {name} {variant.label}: n/a ({row['reason']})")
    add_ratios(rows)
    if cap_utilisation(rows, matmul):
        log(f"[bench] {matmul['raised_by']} trained at {matmul['flops_per_sec'] / 1e9:.1f} GFLOP/s, above every "
            "kernel measured: that is the peak")
    settings = {"models": models, "model_args": args, "methods": methods, "prune_modes": prune_modes,
                "dataset": data.dataset, "data_root": data.data_root, "train_per_class": train_per_class,
                "preset": config.preset, "forget_class": data.forget_class, "retain_images": len(retain),
                "image_shape": list(splits.image_shape), "warmup_epochs": options.warmup_epochs,
                "timed_epochs": options.timed_epochs, "batch_size": config.unlearn.batch_size,
                "precision": config.precision, "channels_last": channels_last, "compile": options.compile,
                "seed": seed, "unlearn": dataclasses.asdict(config.unlearn)}
    results = {"machine": machine, "settings": settings, "matmul": matmul, "rows": rows,
               "wall_sec": time.perf_counter() - started, "machine_load": probe.finish()}
    results["markdown"] = markdown(results)
    if out is not None:
        out = Path(out)
        storage.write_json(out / BENCH_FILE, results)
        storage.write_text(out / TABLE_FILE, results["markdown"])
        results["files"] = [str(out / BENCH_FILE), str(out / TABLE_FILE)]
    return results


def bench_splits(raw: RawDataset, config: RunConfig, train_per_class: int, seed: int, device: torch.device) -> Splits:
    """The class request's splits, or with --forget those of the samples the request files name (all of them)."""
    data = config.data
    if not data.forget:
        return class_splits(raw, data.forget_class, train_per_class, 1, seed, device, stream=data.stream)
    requests = requests_of(raw, data.scenario, data.forget_class, None, None, forget=data.forget,
                           allow_empty_class=data.allow_empty_class, train_per_class=train_per_class)
    return request_splits(raw, requests, train_per_class, 1, seed, device, data.scenario, data.stream)


def run_from_flags(yaml_path: str | Path | None, flags: dict[str, Any], bench_flags: dict[str, Any], *,
                   overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """`prunelora bench`: the config from the file and the flags (checked once), the options from bench's own
    flags; the torch threads set as asked, else to the cores free at the start, and held (machine.free_threads)."""
    config = resolve(yaml_path=yaml_path, overrides=flags)
    set_threads(config.threads or free_threads())  # held for the whole benchmark: its rows stay comparable
    options = BenchOptions(**bench_flags)
    return run(config, options, out=config.out or DEFAULT_OUT, progress=progress, overwrite=overwrite)
