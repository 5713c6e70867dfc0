"""reproduce: cached original -> every method -> evaluate -> rows -> results files.

Each (seed, model, method) is a stage. A finished stage leaves its rows in stages/ and its
deliverables in models/; a rerun with the same configuration reuses them instead of training.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed, ledger, storage
from .adapters import BASE_SUFFIX, base_description, model_card, same_weights, save_adapter_folder
from .config import DataConfig, RunConfig, fingerprint, to_dict
from .data import ImageSet, RawDataset, Splits, class_index, load_dataset
from .data.scenarios import request_splits, requests_of
from .errors import UserError
from .machine import LoadProbe, facts
from .methods import get_method
from .methods.pruning import matching_modules, removal_blocker
from .metrics.cost import MemoryMeter
from .metrics.evaluate import SPLITS, collect_logits, metrics_from_logits, model_evidence, set_accuracy
from .metrics.finite import require_finite_logits
from .metrics.summary import add_retrain_gap, aggregate_seeds
from .metrics.verdict import add_verdicts
from .models import LayerPlan, build_model, get_spec
from .rows import EVALUATED_PREFIXES, make_row
from .runner import (
    MethodRun,
    count_trainable,
    effective_plan,
    method_context,
    pretrain_settings,
    resolved_settings,
    run_method,
)
from .train import PRETRAIN_HINT, fit

EVIDENCE_VERSION = 4  # raised when the evidence itself changes: finished stages are re-evaluated

def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (choose auto, cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device '{name}' (choose auto, cpu or cuda)")
    return device


def check_config(config: RunConfig, raw: RawDataset | None = None,
                 registry_models: bool = True) -> dict[str, tuple[nn.Module, LayerPlan]]:
    """Everything that can be refused before a single file is written.

    Returns, per registry model, the freshly built model and the plan it was checked against
    (the run's plan report describes them). registry_models=False: the run's model is the
    user's own (checked when it is loaded).
    """
    checked: dict[str, tuple[nn.Module, LayerPlan]] = {}
    for name in config.methods:
        method = get_method(name)
        method.check(config.method_args)
        if method.class_only and not config.data.class_wise:
            raise UserError(f"{name} forgets whole classes: it runs in the class scenario (or sequential class "
                            f"requests), not in {config.data.scenario} forgetting")
    if raw is not None and config.data.scenario == "class":
        config.data.forget_class = class_index(raw, config.data.forget_class)
    if not registry_models:
        return checked
    for name in config.models:
        get_spec(name, config.model_args.get(name))
    if raw is None:
        return checked
    channels, size, _ = raw.shape
    methods = [get_method(m) for m in config.methods]
    prunes, adapts = any(m.prunes for m in methods), any(m.adapts for m in methods)
    for name in config.models:  # the layer patterns must name layers before anything trains
        args = config.model_args.get(name, {})
        model = build_model(name, raw.num_classes, channels, size, raw.mean, raw.std, args)
        spec = get_spec(name, args)
        plan = dataclasses.replace(effective_plan(config, spec.plan), family=spec.family)
        checked[name] = (model, plan)
        if prunes:
            matching_modules(model, plan.prune_layers)
            reason = removal_blocker(model, plan.prune_layers) if config.unlearn.prune_mode == "remove" else None
            if reason:
                raise UserError(f"model '{name}': {reason}")
        if adapts:
            matching_modules(model, plan.lora_layers)
    return checked


def model_meta(name: str, args: dict, splits: Splits, data: DataConfig, **extra: Any) -> dict[str, Any]:
    """A checkpoint's description of itself: how to rebuild it, and the data context it was made in.

    The data context (dataset, its folder, the per-class subset sizes) lets `unlearn` and
    `evaluate` on the checkpoint use the same data without the user repeating it.
    """
    channels, size, _ = splits.image_shape
    root = str(Path(data.data_root).expanduser().resolve()) if data.data_root else None
    context = {"data_root": root, "train_per_class": data.train_per_class, "test_per_class": data.test_per_class}
    return {"model": name, "model_args": args, "num_classes": splits.num_classes, "in_channels": channels,
            "image_size": size, "mean": list(splits.mean), "std": list(splits.std), "dataset": data.dataset,
            "data": context, **extra}


def describe_model(name: str, args: dict, params: int) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in args.items())
    return f"{name} ({shown}; {params / 1e3:.0f}k params)" if shown else f"{name} ({params / 1e3:.0f}k params)"


@dataclass
class Experiment:
    """One configured run: data loaded once, splits per seed, outputs under config.out."""

    config: RunConfig
    device: torch.device
    progress: bool = True
    probe: LoadProbe | None = None  # the machine's load while this run is timed
    warnings: list[str] = field(default_factory=list)  # shown under the tables and on stderr
    registry_models: bool = True  # False when the model is the user's own (hf:, py:)
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level results (the plans, the user's model)

    def __post_init__(self) -> None:
        if self.config.out is None:
            self.config.out = "runs/reproduce"
        self.out = Path(self.config.out)
        self.raw = load_dataset(self.config.data.dataset, self.config.data.data_root, self.config.data.download,
                                stream=self.config.data.stream, progress=self.progress)
        checked = check_config(self.config, self.raw, self.registry_models)
        if checked:
            from .plan_report import describe_plan

            self.extra["plans"] = {name: describe_plan(model, plan, self.config.methods).to_dict()
                                   for name, (model, plan) in checked.items()}
        d = self.config.data
        self.flip = d.flip if d.flip is not None else self.raw.mirror_invariant  # augmentation's mirror
        self.requests = requests_of(self.raw, d.scenario, d.forget_class, d.forget_ratio, d.requests)
        self._splits: dict[tuple[int, int], Splits] = {}
        self._originals: dict[tuple[str, int], tuple[nn.Module, dict[str, Any]]] = {}
        self.training_sec = 0.0  # time inside training steps of what this run computed (not reused)
        self.reused_sec = 0.0  # recorded seconds of the stages reused from an earlier invocation
        self.reused_stages = 0
        self.timings: dict[str, float] = {}  # wall seconds of each part of the evidence (attacks, probe, ...)
        self.references: dict[tuple[str, int], nn.Module] = {}  # (model, seed) -> the original, for relearn time
        if self.config.evidence.ulira:
            from .ulira_shadows import check_capacity

            check_capacity(self)

    def splits(self, seed: int, request: int = 1) -> Splits:
        """The splits after the first `request` requests of the scenario (1: the only one, unless sequential)."""
        if (seed, request) not in self._splits:
            d = self.config.data
            self._splits[(seed, request)] = request_splits(self.raw, self.requests[:request], d.train_per_class,
                                                           d.test_per_class, seed, self.device, d.scenario, d.stream,
                                                           d.holdout_per_class)
        return self._splits[(seed, request)]

    @property
    def sequential(self) -> bool:
        return self.config.data.scenario == "sequential"

    def seed_dir(self, seed: int) -> Path:
        return self.out / f"seed{seed}"

    def request_part(self, request: int) -> str:
        """The folder or tag part naming a request of a sequence ("" for single-request scenarios)."""
        return f"r{request}" if self.sequential else ""

    def reproduce_rows(self) -> list[dict]:
        """Every seed x model x request: the original's row, then each method's rows."""
        return self.method_rows(self.config.models, lambda name, seed: self.original(name, seed))

    def method_rows(self, models: list[str], original_of, started: float | None = None) -> list[dict]:
        """Each method applied request after request to the model its previous request produced.

        Retrain restarts from scratch on the cumulative retain set at every request. In a sequence
        the results files are written after every request.
        """
        rows: list[dict] = []
        started = time.perf_counter() if started is None else started
        for seed in self.config.seeds:
            for name in models:
                original, meta = original_of(name, seed)
                self.references[(name, seed)] = original
                first = len(rows)
                chain = {m: ((lambda model=original: model), meta["key"]) for m in self.config.methods}
                for request in range(1, len(self.requests) + 1):
                    rows += self.original_rows(name, seed, original, meta, request)
                    for method in self.config.methods:
                        start, start_key = chain[method]
                        stage, final, key = self.stage(name, method, start, start_key, seed, request)
                        rows += stage
                        chain[method] = (final, key)
                    if self.sequential and request < len(self.requests):
                        finish(self, list(rows), started, partial=True)
                if self.config.evidence.ulira:
                    from .ulira_shadows import add_ulira

                    add_ulira(self, name, seed, rows[first:])
        return rows

    # -- the original model -------------------------------------------------------------------
    def original(self, name: str, seed: int) -> tuple[nn.Module, dict[str, Any]]:
        """Train the original on all classes, or load it from the cache keyed by its configuration."""
        if (name, seed) in self._originals:
            return self._originals[(name, seed)]
        cfg, splits = self.config, self.splits(seed)
        args = cfg.model_args.get(name, {})
        key = fingerprint("original", name, args, cfg.data.dataset, cfg.data.train_per_class,
                          to_dict(cfg)["pretrain"], seed)
        path = self.out / "cache" / f"{name}-{key}.safetensors"
        if path.is_file() and self.verified(f"{name} original", [path]):
            model, meta = storage.load_model(path)
            self.reused_stages += 1
            self.reused_sec += float((meta.get("training") or {}).get("total_sec") or 0.0)
            self._originals[(name, seed)] = model.to(self.device), {**meta, "key": key}
            return self._originals[(name, seed)]
        model, training = self.train_original(name, splits.train, seed, f"{name} original")
        meta = model_meta(name, args, splits, cfg.data, method="original", training=training, seed=seed,
                          key=key)
        storage.save_model(model, path, meta)
        self._originals[(name, seed)] = model, meta
        return model, meta

    def train_original(self, name: str, data: ImageSet, seed: int, desc: str) -> tuple[nn.Module, dict[str, Any]]:
        """A freshly built model trained on `data` with the pre-training recipe; what it cost."""
        cfg, splits = self.config, self.splits(seed)
        args = cfg.model_args.get(name, {})
        torch.manual_seed(seed)
        model = build_model(name, splits.num_classes, splits.image_shape[0], splits.image_shape[1],
                            splits.mean, splits.std, args).to(self.device)
        settings = pretrain_settings(cfg, get_spec(name, args).family, self.flip)
        with MemoryMeter(self.device) as meter:
            history = fit(model, data, settings, cfg.pretrain.epochs, seed=seed, precision=cfg.precision,
                          channels_last=cfg.channels_last, desc=desc, progress=self.progress, hint=PRETRAIN_HINT,
                          on_epoch_end=lambda epoch, history: meter.stop_counting_tensors())
        self.training_sec += sum(history.epoch_seconds)
        training = {"sec_per_epoch": sum(history.epoch_seconds) / len(history.epoch_seconds),
                    "total_sec": history.seconds_until(len(history.epoch_seconds)),
                    "peak_memory_mb": meter.final_mb, "memory_kind": meter.kind, "rss_growth_mb": meter.final_rss_mb,
                    "trainable_params": count_trainable(model)}
        return model, training

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, seed: int, logits_path: Path | None, request: int = 1,
                 name: str | None = None) -> dict:
        """Every metric on the splits after `request` requests; in a sequence, the accuracy on each request's data.

        name: the model's name, whose original (self.references) relearn time starts from.
        """
        splits, cfg = self.splits(seed, request), self.config
        features: dict = {}  # the probe's features, from the same forward passes
        logits, labels = collect_logits(model, splits, cfg.eval_batch_size, features if cfg.evidence.probe else None)
        require_finite_logits(logits)  # before the logits are saved: a NaN model leaves nothing behind
        if logits_path is not None:
            save_logits(logits_path, logits, labels)
        metrics = metrics_from_logits(logits, labels, seed, cfg.mia_max_per_side, cfg.evidence, self.timings)
        metrics.update(model_evidence(model, splits, seed, cfg.evidence, self.references.get((name, seed)),
                                      cfg.eval_batch_size, self.timings, features or None))
        if self.sequential:
            for k, part in enumerate(splits.request_sets, start=1):
                metrics[f"forget_acc_r{k}"] = set_accuracy(model, part, self.config.eval_batch_size)
        return metrics

    def request_fields(self, seed: int, request: int) -> dict[str, Any]:
        """What every row says about the request it measures."""
        splits = self.splits(seed, request)
        return {"scenario": self.config.data.scenario, "request": request,
                "request_desc": self.requests[request - 1].describe(splits.class_names),
                "forgotten_classes": ",".join(map(str, splits.forget_classes)) or None}

    def logits_path(self, model: str, method: str, epochs: int | None, seed: int, request: int = 1) -> Path:
        tag = f"{model}_{method}" + (f"_{epochs}" if epochs is not None else "")
        suffix = "" if len(self.config.seeds) == 1 else f"_seed{seed}"
        part = f"_{self.request_part(request)}" if self.sequential else ""
        return self.out / "logits" / f"{tag}{part}{suffix}.npz"

    # -- stages -------------------------------------------------------------------------------
    def original_rows(self, name: str, seed: int, model: nn.Module, meta: dict[str, Any],
                      request: int = 1) -> list[dict]:
        """The original's row at a request: how much of everything forgotten so far it still knows."""
        training = meta["training"]
        args = self.config.model_args.get(name, {})
        params = sum(p.numel() for p in model.parameters())
        logits = self.logits_path(name, "original", None, seed, request)
        metrics = self.evaluate(model, seed, logits, request, name)
        return [make_row(name, "original", None, metrics, sec_per_epoch=training["sec_per_epoch"],
                         total_sec=training["total_sec"], peak_memory_mb=training["peak_memory_mb"],
                         trainable_params=training["trainable_params"], seed=seed, params=params,
                         memory_kind=training["memory_kind"], rss_growth_mb=training.get("rss_growth_mb"),
                         model_desc=describe_model(name, args, params),
                         logits_file=str(logits.relative_to(self.out)), **self.request_fields(seed, request))]

    def stage(self, name: str, method: str, start: nn.Module, start_key: str, seed: int,
              request: int = 1) -> tuple[list[dict], Callable[[], nn.Module], str]:
        """One (model, method, request) stage: its rows, its final model (loaded lazily) and its key.

        Reused when finished with the same configuration and the same starting model.
        """
        cfg = self.config
        args = cfg.model_args.get(name, {})
        key = fingerprint("stage", name, method, args, to_dict(cfg)["data"], to_dict(cfg)["pretrain"],
                          to_dict(cfg)["unlearn"], cfg.method_args, cfg.mia_max_per_side, seed, start_key, request)
        folder = self.stage_folder(seed, name, request)
        marker = folder["stages"] / f"{method}.json"
        if marker.is_file():
            try:
                saved = json.loads(marker.read_text())
                if saved.get("fingerprint") == key and self.verified(
                        f"{name} {method}", [marker, *(self.out / k for k in saved.get("outputs", []))]):
                    self.reused_stages += 1
                    self.reused_sec += float(saved.get("stage_sec") or max(r["total_sec"] for r in saved["rows"]))
                    final_file = folder["models"] / saved["final"] if saved.get("final") else None
                    if saved.get("evidence") != self.evidence_key():
                        saved["rows"] = self.reevaluate(saved["rows"], name, seed, request)
                        storage.write_json(marker, {**saved, "evidence": self.evidence_key()})
                    return saved["rows"], lambda: self._load_final(final_file), key
            except (ValueError, KeyError, TypeError, AttributeError):
                self.warnings.append(f"{name} {method}: its stage record {marker} is damaged: the stage was run again")
        started = time.perf_counter()
        splits = self.splits(seed, request)
        spec = get_spec(name, args)
        if get_method(method).uses_forget and len(splits.new_forget) == 0:
            raise UserError(f"{method} needs forget data, but the request leaves the forget set empty "
                            "(raise --train-per-class or --forget-ratio)")

        def fresh() -> nn.Module:
            return build_model(name, splits.num_classes, splits.image_shape[0], splits.image_shape[1],
                               splits.mean, splits.std, args)

        ctx = method_context(cfg, spec.plan, spec.family, fresh, splits.retain_train, splits.new_forget,
                             splits.forget_classes or None, flip=self.flip)
        start_model = start()
        run = run_method(method, start_model, splits.retain_train, ctx, seed=seed, precision=cfg.precision,
                         channels_last=cfg.channels_last,
                         cache_prefix=cfg.unlearn.cache_prefix, progress=self.progress, desc=f"{name} {method}",
                         on_epoch=forgotten_at(cfg.unlearn.until_forget_acc, splits.forget_train))
        self.training_sec += sum(run.history.epoch_seconds)
        with ledger.capture() as outputs:
            rows, final_file = self._deliver(name, args, run, seed, start_model, request)
        storage.write_json(marker, {"fingerprint": key, "rows": rows, "stage_sec": time.perf_counter() - started,
                               "final": final_file, "evidence": self.evidence_key(), "outputs": outputs})
        final = run.snapshots[-1].model
        return rows, lambda: final, key

    def verified(self, what: str, paths: list[Path]) -> bool:
        """Whether a finished stage's outputs are exactly as written (size and sha256 in run.json): a stage
        whose files were truncated, edited or removed is run again, and the results say so."""
        def check() -> list[str]:
            run = ledger.active()  # None outside a command (the Python API): nothing recorded to check against
            return run.verify(run.key(p) for p in paths) if run is not None else []

        problems = distributed.on_main(check)  # rank 0 holds the ledger; every rank takes its decision
        if problems:
            self.warnings.append(f"{what}: a finished stage's output no longer matches run.json ({problems[0]}): "
                                 "the stage was run again")
        return not problems

    def evidence_key(self) -> str:
        """What a stage's rows were evaluated with: another key re-evaluates its saved models."""
        return fingerprint("evidence", EVIDENCE_VERSION, to_dict(self.config)["evidence"], self.config.mia_max_per_side)

    def reevaluate(self, rows: list[dict], name: str, seed: int, request: int) -> list[dict]:
        """A finished stage's rows measured again from its saved models (new evidence settings): never retrained."""
        folder = self.stage_folder(seed, name, request)["models"]
        out = []
        for row in rows:
            tag = row["method"] + (f"_e{row['epochs']}" if row["epochs"] is not None else "")
            path = folder / f"{tag}.safetensors"
            if not path.is_file():
                raise UserError(f"a finished stage's model is missing ({path}); rerun with --overwrite")
            model = storage.load_model(path)[0].to(self.device)
            logits = self.logits_path(name, row["method"], row["epochs"], seed, request)
            metrics = self.evaluate(model, seed, logits, request, name)
            merged = {k: metrics.get(k, v) for k, v in row.items()  # the row's order; stale evidence dropped
                      if k in metrics or not k.startswith(EVALUATED_PREFIXES)}
            out.append({**merged, **metrics})
        return out

    def stage_folder(self, seed: int, name: str, request: int) -> dict[str, Path]:
        part = self.request_part(request)
        return {kind: self.seed_dir(seed) / kind / name / part if part else self.seed_dir(seed) / kind / name
                for kind in ("stages", "models")}

    def _load_final(self, path: Path | None) -> nn.Module:
        if path is None or not path.is_file():
            raise UserError(f"a finished stage's model is missing ({path}); rerun with --overwrite")
        return storage.load_model(path)[0].to(self.device)

    def _deliver(self, name: str, args: dict, run: MethodRun, seed: int, original: nn.Module,
                 request: int = 1) -> tuple[list[dict], str]:
        """Save and evaluate the model at every budget; the last one's adapters go beside it with their base.

        Returns the rows and the file name of the last budget's model (the next request starts from it).
        """
        splits, rows = self.splits(seed, request), []
        folder = self.stage_folder(seed, name, request)["models"]
        tag = run.method
        for snap in run.snapshots:
            tag = run.method + (f"_e{snap.epochs}" if snap.epochs is not None else "")
            meta = model_meta(name, args, splits, self.config.data, method=run.method, epochs=snap.epochs, seed=seed,
                              forget_class=splits.forget_class, forget_classes=splits.forget_classes,
                              request=request, **run.info)
            storage.save_model(snap.model, folder / f"{tag}.safetensors", meta)
            logits = self.logits_path(name, run.method, snap.epochs, seed, request)
            metrics = self.evaluate(snap.model, seed, logits, request, name)
            if run.prepared.save_adapters is not None and snap is run.snapshots[-1]:
                self._save_adapters(folder / f"{tag}_adapter", run, meta, metrics, original, f"{tag}.safetensors")
            params = sum(p.numel() for p in snap.model.parameters())
            rows.append(make_row(name, run.method, snap.epochs, metrics, sec_per_epoch=snap.sec_per_epoch,
                                 total_sec=snap.total_sec, peak_memory_mb=snap.peak_memory_mb,
                                 trainable_params=run.trainable_params, seed=seed, params=params,
                                 memory_kind=snap.memory_kind, rss_growth_mb=snap.rss_growth_mb, model_desc=describe_model(name, args, params),
                                 logits_file=str(logits.relative_to(self.out)),
                                 **self.request_fields(seed, request),
                                 **{k: v for k, v in run.info.items() if isinstance(v, (int, float, str, bool))}))
        return rows, f"{tag}.safetensors"

    @staticmethod
    def _save_adapters(folder: Path, run: MethodRun, meta: dict, metrics: dict, original: nn.Module,
                       merged_file: str) -> None:
        base = run.prepared.adapter_base()
        description = base_description(run.info, same_weights(base, original))
        base_meta = {**meta, "method": run.method + BASE_SUFFIX, "adapter_base": True}
        save_adapter_folder(folder, run.prepared.save_adapters, base, base_meta,
                            model_card(meta, metrics, description, merged_file))


def forgotten_at(until: float | None, forget: ImageSet):
    """An on_epoch hook that stops the run once the forget set's accuracy is at most `until` (%), or None."""
    if until is None:
        return None

    def check(epoch: int, model: nn.Module) -> bool:
        return len(forget) > 0 and set_accuracy(model, forget) <= until

    return check


def save_logits(path: Path, logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> None:
    """`<split>_logits` and `<split>_labels` for the four splits, written atomically."""
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_logits"] = logits[split]
        arrays[f"{split}_labels"] = labels[split]
    with storage.atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def reproduce(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """The paper's experiment: every model x method x seed; returns {"config", "rows", ...}."""
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), progress)
    return finish(exp, exp.reproduce_rows(), started)


def finish(exp: Experiment, rows: list[dict], started: float, partial: bool = False) -> dict[str, Any]:
    """Gap to retrain, seed aggregates, sizes, reuse, the machine's load; then write every results file.

    wall_sec counts the recorded seconds of the stages reused from an earlier invocation, so a
    resumed run reports what the whole run cost; elapsed_sec is this invocation alone.
    """
    from .report import write_results

    rows = add_retrain_gap(rows)
    if len(exp.config.seeds) > 1:
        rows += aggregate_seeds(rows)
    rows = add_verdicts(rows)
    elapsed = time.perf_counter() - started
    seed = exp.config.seeds[0]
    reached = max((r for s, r in exp._splits if s == seed), default=1)  # the latest request measured
    sizes = {name: len(part) for name, part in exp.splits(seed, reached).named().items()}
    results = {"config": to_dict(exp.config), "rows": rows, "environment": facts(exp.device),
               **time_split(elapsed, exp.training_sec),
               "wall_sec": elapsed + exp.reused_sec, "elapsed_sec": elapsed,
               "reused": {"stages": exp.reused_stages, "sec": exp.reused_sec},
               "data_sizes": sizes, "warnings": list(exp.warnings), "out": str(exp.out),
               "evidence_sec": dict(exp.timings), **exp.extra}
    results["method_settings"] = method_settings(exp)
    if exp.sequential:
        results["requests"] = [r.describe(exp.raw.class_names) for r in exp.requests]
        results["complete"] = not partial
    if exp.probe is not None:
        results["machine_load"] = exp.probe.finish()
    write_results(results, exp.out)
    return results


def method_settings(exp: Experiment) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> model -> the settings it ran with, fully resolved (results.json, the report)."""
    cfg, side = exp.config, exp.raw.shape[-1]

    def family(name: str) -> str:
        return get_spec(name, cfg.model_args.get(name)).family if exp.registry_models else ""

    return {method: {name: resolved_settings(cfg, method, family(name), exp.flip, side) for name in cfg.models}
            for method in cfg.methods}


def time_split(wall_sec: float, training_sec: float) -> dict[str, Any]:
    """How much of a run went into training steps, and how much into everything else.

    Everything else: data loading, surgery, evaluation, attacks, checkpoints (not the final
    results files and plots, written after this is measured).
    """
    other = max(0.0, wall_sec - training_sec)
    return {"wall_sec": wall_sec, "time_split": {
        "training_steps_sec": training_sec, "other_sec": other,
        "other_share": other / wall_sec if wall_sec > 0 else None}}
