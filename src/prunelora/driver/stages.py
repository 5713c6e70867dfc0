"""The stage driver: every path that trains or evaluates a model runs its stages here.

A stage is one (seed, model, method, request). The driver fingerprints it (the configuration and
the model it starts from), reuses it when a finished one with that fingerprint is on disk and its
outputs still match run.json, and otherwise runs the method through the subject (subject.py),
evaluates the model at every budget, has the subject save its deliverables, and records the rows
in seed<s>/stages/<model>[/r<k>]/<method>.json. The original models of registry subjects are
trained once and cached under cache/.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import ledger, storage
from ..config import RunConfig, data_key, fingerprint, to_dict
from ..data import Splits, load_dataset
from ..data.scenarios import get_scenario, request_splits, requests_of
from ..errors import UserError
from ..machine import LoadProbe
from ..methods import get_method
from ..metrics.evaluate import predict
from ..plan_report import describe_plan
from ..rows import make_row, measured_prefixes
from ..ulira_shadows import Shadows, check_capacity, ulira_scores
from . import stage_store
from .evaluation import evidence_key, measure
from .preflight import check_config
from .record import record_path, stage_facts, write_record
from .registry import RegistrySubject, describe_model, model_meta
from .results import finish
from .subject import Delivery, Outcome, StagePlace, Subject

Original = tuple[nn.Module, dict[str, Any]]  # the model, and its meta: "key" (its fingerprint), "training"


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
    unlearns: bool = True  # False: the command only evaluates (evaluate --model), no method is needed

    def __post_init__(self) -> None:
        if self.config.out is None:
            self.config.out = "runs/reproduce"
        self.out = Path(self.config.out)
        self.raw = load_dataset(self.config.data.dataset, self.config.data.data_root, self.config.data.download,
                                stream=self.config.data.stream, progress=self.progress,
                                id_column=self.config.data.id_column)
        checked = check_config(self.config, self.raw, self.registry_models, self.unlearns)
        if checked:
            self.extra["plans"] = {name: describe_plan(model, plan, self.config.methods).to_dict()
                                   for name, (model, plan) in checked.items()}
        d = self.config.data
        self.flip = d.flip if d.flip is not None else self.raw.mirror_invariant  # augmentation's mirror
        self.requests = requests_of(self.raw, d.scenario, d.forget_class, d.forget_ratio, d.requests, forget=d.forget,
                                    allow_empty_class=d.allow_empty_class, train_per_class=d.train_per_class,
                                    holdout_per_class=d.holdout_per_class)
        self._splits: dict[tuple[int, int], Splits] = {}
        self._originals: dict[tuple[str, int], Original] = {}
        self._subjects: dict[str, RegistrySubject] = {}
        self.training_sec = 0.0  # time inside training steps of what this run computed (not reused)
        self.reused_sec = 0.0  # recorded seconds of the stages reused from an earlier invocation
        self.reused_stages = 0
        self.timings: dict[str, float] = {}  # wall seconds of each part of the evidence (attacks, probe, ...)
        self.references: dict[tuple[str, int], nn.Module] = {}  # (model, seed) -> the original, for relearn time
        if self.config.evidence.ulira:
            for seed in self.config.seeds:
                check_capacity(self.config.evidence.ulira, len(self.splits(seed).forget_train))

    # -- data and names ------------------------------------------------------------------------
    def splits(self, seed: int, request: int = 1) -> Splits:
        """The splits after the first `request` requests of the scenario (1: the only one, unless sequential)."""
        if (seed, request) not in self._splits:
            d = self.config.data
            self._splits[(seed, request)] = request_splits(self.raw, self.requests[:request], d.train_per_class,
                                                           d.test_per_class, seed, self.device, d.scenario, d.stream,
                                                           d.holdout_per_class, every=self.requests)
        return self._splits[(seed, request)]

    def named_key(self, request: int) -> list[str]:
        """[] unless the requests name samples; else a digest of the ids requests 1..request name, so that a request
        file edited since a stage ran gives that stage another key (the config holds only the file's name)."""
        named = [[self.raw.train_ids[p] for p in r.named.positions] for r in self.requests[:request]
                 if r.named is not None]
        return [fingerprint("named", named)] if named else []

    def reached(self, seed: int) -> int:
        """The latest request measured for `seed` (1 before any)."""
        return max((r for s, r in self._splits if s == seed), default=1)

    @property
    def sequential(self) -> bool:
        return get_scenario(self.config.data.scenario).sequential

    def seed_dir(self, seed: int) -> Path:
        return self.out / f"seed{seed}"

    def request_part(self, request: int) -> str:
        """The folder or tag part naming a request of a sequence ("" for single-request scenarios)."""
        return f"r{request}" if self.sequential else ""

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

    def stage_folder(self, seed: int, name: str, request: int) -> dict[str, Path]:
        part = self.request_part(request)
        return {kind: self.seed_dir(seed) / kind / name / part if part else self.seed_dir(seed) / kind / name
                for kind in ("stages", "models")}

    def place(self, seed: int, name: str, request: int) -> StagePlace:
        return StagePlace(self.seed_dir(seed) / "models" / name, self.request_part(request))

    def subject(self, name: str) -> RegistrySubject:
        """The registry model `name` of this run, as a stage subject."""
        if name not in self._subjects:
            self._subjects[name] = RegistrySubject(name, self.config, self.device, self.flip, self.progress)
        return self._subjects[name]

    def family(self, name: str) -> str:
        """The model family whose recipes the methods use ("" for the user's own models)."""
        return self.subject(name).family if self.registry_models else ""

    # -- the run -------------------------------------------------------------------------------
    def reproduce_rows(self) -> list[dict]:
        """Every seed x model x request: the original's row, then each method's rows."""
        return self.method_rows([self.subject(name) for name in self.config.models], self.original)

    def method_rows(self, subjects: list[Subject], original_of: Callable[[Subject, int], Original],
                    started: float | None = None) -> list[dict]:
        """Each method applied request after request to the model its previous request produced.

        Retrain restarts from scratch on the cumulative retain set at every request. In a sequence
        the results files are written after every request.
        """
        rows: list[dict] = []
        started = time.perf_counter() if started is None else started
        for seed in self.config.seeds:
            for subject in subjects:
                original, meta = original_of(subject, seed)
                self.references[(subject.name, seed)] = subject.evaluated(original)
                first = len(rows)
                chain = {m: ((lambda model=original: model), meta["key"]) for m in self.config.methods}
                for request in range(1, len(self.requests) + 1):
                    rows += self.original_rows(subject, seed, original, meta, request)
                    for method in self.config.methods:
                        start, start_key = chain[method]
                        stage, final, key = self.stage(subject, method, start, start_key, seed, request)
                        rows += stage
                        chain[method] = (final, key)
                    if self.sequential and request < len(self.requests):
                        finish(self, list(rows), started, partial=True)
                if self.config.evidence.ulira and isinstance(subject, RegistrySubject):
                    self.add_ulira(subject, seed, rows[first:])
        return rows

    def original(self, subject: Subject | str, seed: int) -> Original:
        """A registry model's original, trained on all classes, or loaded from the cache keyed by its
        configuration."""
        subject = self.subject(subject) if isinstance(subject, str) else subject
        name = subject.name
        if (name, seed) in self._originals:
            return self._originals[(name, seed)]
        cfg, splits = self.config, self.splits(seed)
        args = cfg.model_args.get(name, {})
        key = self.original_key(name, seed)
        path = self.out / "cache" / f"{name}-{key}.safetensors"
        if path.is_file() and self.verified(f"{name} original", [path]):
            model, meta = storage.load_model(path)
            self.reused_stages += 1
            self.reused_sec += float((meta.get("training") or {}).get("total_sec") or 0.0)
            self._originals[(name, seed)] = model.to(self.device), {**meta, "key": key}
            return self._originals[(name, seed)]
        model, training, seconds = subject.train(splits.train, splits, seed, f"{name} original")
        self.training_sec += seconds
        meta = model_meta(name, args, splits, cfg.data, method="original", training=training, seed=seed,
                          key=key)
        storage.save_model(model, path, meta)
        self._originals[(name, seed)] = model, meta
        return model, meta

    def original_key(self, name: str, seed: int) -> str:
        """The cache key of a registry model's original: its configuration, and where named samples forced the
        training subset away from the seeded draw, that subset's digest (else the key runs have always had)."""
        cfg, subset = self.config, self.splits(seed).subset_key
        return fingerprint("original", name, cfg.model_args.get(name, {}), cfg.data.dataset, cfg.data.train_per_class,
                           to_dict(cfg)["pretrain"], seed, *([subset] if subset is not None else []))

    def evaluate(self, model: nn.Module, seed: int, logits_path: Path | None, request: int = 1,
                 name: str | None = None) -> dict:
        """Every metric on the splits after `request` requests (evaluation.measure).

        name: the model's name, whose original (self.references) relearn time starts from.
        """
        return measure(model, self.splits(seed, request), seed, self.config, logits_path,
                       self.references.get((name, seed)), self.timings, self.sequential)

    def original_rows(self, subject: Subject, seed: int, model: nn.Module, meta: dict[str, Any],
                      request: int = 1) -> list[dict]:
        """The original's row at a request: how much of everything forgotten so far it still knows."""
        name, training = subject.name, meta["training"]
        params = sum(p.numel() for p in model.parameters())
        logits = self.logits_path(name, "original", None, seed, request)
        metrics = self.evaluate(subject.evaluated(model), seed, logits, request, name)
        memory = ({"memory_kind": training["memory_kind"], "rss_growth_mb": training.get("rss_growth_mb")}
                  if "memory_kind" in training else {})
        return [make_row(name, "original", None, metrics, sec_per_epoch=training["sec_per_epoch"],
                         total_sec=training["total_sec"], peak_memory_mb=training["peak_memory_mb"],
                         trainable_params=training["trainable_params"], seed=seed, params=params, **memory,
                         model_desc=describe_model(name, self.config.model_args.get(name, {}), params),
                         logits_file=str(logits.relative_to(self.out)), **self.request_fields(seed, request))]

    # -- stages --------------------------------------------------------------------------------
    def stage(self, subject: Subject, method: str, start: Callable[[], nn.Module], start_key: str, seed: int,
              request: int = 1) -> tuple[list[dict], Callable[[], nn.Module], str]:
        """One (model, method, request) stage: its rows, its final model (loaded lazily) and its key.

        Reused when finished with the same configuration and the same starting model.
        """
        cfg, name = self.config, subject.name
        args = cfg.model_args.get(name, {})
        key = fingerprint("stage", name, method, args, data_key(cfg.data), to_dict(cfg)["pretrain"],
                          to_dict(cfg)["unlearn"], cfg.method_args, cfg.mia_max_per_side, seed, start_key, request,
                          *self.named_key(request))
        marker = self.stage_folder(seed, name, request)["stages"] / f"{method}.json"
        reused = self.reused(subject, method, key, marker, seed, request)
        if reused is not None:
            return (*reused, key)
        started = time.perf_counter()
        splits = self.splits(seed, request)
        if get_method(method).uses_forget and len(splits.new_forget) == 0:
            raise UserError(f"{method} needs forget data, but the request leaves the forget set empty "
                            "(raise --train-per-class or --forget-ratio)")
        start_model = start()
        outcome = subject.run(method, start_model, splits, seed, f"{name} {method}")
        self.training_sec += sum(outcome.run.history.epoch_seconds)
        self.warnings += [f"{name} {method}: {w}" for w in outcome.warnings]
        with ledger.capture() as outputs:
            rows, final_path = self.deliver(subject, outcome, start_model, seed, request)
        stage_store.write(marker, key, outputs, rows=rows, stage_sec=time.perf_counter() - started,
                          final=str(final_path.relative_to(self.out)), evidence=self.evidence_key(),
                          warnings=outcome.warnings)
        final = subject.final(outcome)
        return rows, lambda: final, key

    def reused(self, subject: Subject, method: str, key: str, marker: Path, seed: int,
               request: int) -> tuple[list[dict], Callable[[], nn.Module]] | None:
        """A finished stage's rows and final model, when its record has this key and its outputs are intact."""
        name = subject.name
        saved = stage_store.finished(marker, key, f"{name} {method}", self.out, self.warnings)
        if saved is None:
            return None
        try:
            seconds = float(saved.get("stage_sec") or max(r["total_sec"] for r in saved["rows"]))
            if saved.get("evidence") != self.evidence_key():
                saved["rows"] = self.reevaluate(subject, saved["rows"], seed, request)
                storage.write_json(marker, {**saved, "evidence": self.evidence_key()})
            kept = [f"{name} {method}: {w}" for w in saved.get("warnings", [])]
            final = subject.deliverable(self.place(seed, name, request), method, saved["rows"][-1]["epochs"], True)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            self.warnings.append(f"{name} {method}: its stage record {marker} is damaged: the stage was run again")
            return None
        self.reused_stages += 1
        self.reused_sec += seconds
        self.warnings += kept
        return saved["rows"], lambda: self.load_deliverable(subject, final)

    def deliver(self, subject: Subject, outcome: Outcome, start: nn.Module, seed: int,
                request: int) -> tuple[list[dict], Path]:
        """Evaluate the model at every budget and have the subject save it; the rows and the last budget's path."""
        splits, rows, run, name = self.splits(seed, request), [], outcome.run, subject.name
        args = self.config.model_args.get(name, {})
        place = self.place(seed, name, request)
        path = place.models
        shared = stage_facts(self.config, self.device, splits, request, start)  # every budget's record holds these
        previous = (record_path(subject.deliverable(self.place(seed, name, request - 1), run.method,
                                                    run.snapshots[-1].epochs, True)) if request > 1 else None)
        for i, snap in enumerate(run.snapshots):
            last = i == len(run.snapshots) - 1
            logits = self.logits_path(name, run.method, snap.epochs, seed, request)
            metrics = self.evaluate(subject.evaluated(snap.model), seed, logits, request, name)
            path = subject.deliverable(place, run.method, snap.epochs, last)
            note = outcome.notes[i] if outcome.notes else {}
            fields = subject.save(path, Delivery(run.method, run, snap, note, metrics, last, start, splits, seed,
                                                 request, self.out))
            write_record(path, shared, model=name, loader=subject.loader(), method=run.method, epochs=snap.epochs,
                         seed=seed, metrics=metrics, previous=previous,
                         cost={"sec_per_epoch": snap.sec_per_epoch, "total_sec": snap.total_sec,
                               "peak_memory_mb": snap.peak_memory_mb, "trainable_params": run.trainable_params})
            params = sum(p.numel() for p in snap.model.parameters())
            rows.append(make_row(name, run.method, snap.epochs, metrics, sec_per_epoch=snap.sec_per_epoch,
                                 total_sec=snap.total_sec, peak_memory_mb=snap.peak_memory_mb,
                                 trainable_params=run.trainable_params, seed=seed, params=params,
                                 memory_kind=snap.memory_kind, rss_growth_mb=snap.rss_growth_mb,
                                 model_desc=describe_model(name, args, params),
                                 logits_file=str(logits.relative_to(self.out)), **fields,
                                 **self.request_fields(seed, request),
                                 **{k: v for k, v in run.info.items() if isinstance(v, (int, float, str, bool))}))
        return rows, path

    def verified(self, what: str, paths: list[Path]) -> bool:
        """Whether a finished stage's outputs are exactly as written (size and sha256 in run.json): a stage
        whose files were truncated, edited or removed is run again, and the results say so."""
        return stage_store.verified(what, paths, self.warnings)

    def evidence_key(self) -> str:
        return evidence_key(self.config)

    def reevaluate(self, subject: Subject, rows: list[dict], seed: int, request: int) -> list[dict]:
        """A finished stage's rows measured again from its saved models (new evidence settings): never retrained."""
        place, out = self.place(seed, subject.name, request), []
        for i, row in enumerate(rows):
            path = subject.deliverable(place, row["method"], row["epochs"], i == len(rows) - 1)
            model = subject.evaluated(self.load_deliverable(subject, path))
            logits = self.logits_path(subject.name, row["method"], row["epochs"], seed, request)
            metrics = self.evaluate(model, seed, logits, request, subject.name)
            merged = {k: metrics.get(k, v) for k, v in row.items()  # the row's order; stale evidence dropped
                      if k in metrics or not k.startswith(measured_prefixes())}
            out.append({**merged, **metrics})
        return out

    @staticmethod
    def load_deliverable(subject: Subject, path: Path) -> nn.Module:
        if not path.exists():
            raise UserError(f"a finished stage's model is missing ({path}); rerun with --overwrite")
        return subject.load(path)

    # -- U-LiRA --------------------------------------------------------------------------------
    def add_ulira(self, subject: RegistrySubject, seed: int, rows: list[dict]) -> None:
        """U-LiRA's figures for every method of the run on this model and seed, into `rows`."""
        started = time.perf_counter()
        cfg, splits, d = self.config, self.splits(seed), to_dict(self.config)

        def train(data, pair_seed: int, desc: str) -> tuple[nn.Module, float]:
            model, _, seconds = subject.train(data, splits, pair_seed, f"{subject.name} {desc}")
            return model, seconds

        def run(method: str, original: nn.Module, retain, forget, run_seed: int):
            outcome = subject.run_on(method, original, retain, forget, splits, run_seed)
            return [(s.epochs, s.model) for s in outcome.run.snapshots], sum(outcome.run.history.epoch_seconds)

        shadows = Shadows(train=train, run=run, logits=lambda model, data: predict(model, data, cfg.eval_batch_size),
                          verified=self.verified)
        identity = (subject.name, subject.args, data_key(cfg.data), d["pretrain"], d["unlearn"], cfg.method_args, seed,
                    *self.named_key(1))
        scores = ulira_scores(shadows, splits.train, splits.forget_index, seed, cfg.evidence.ulira, cfg.methods,
                              identity, self.seed_dir(seed) / "ulira" / subject.name)
        self.training_sec += scores.training_sec
        for row in rows:
            row.update(scores.figures.get((row["method"], row["epochs"]), {}))
        self.timings["ulira"] = self.timings.get("ulira", 0.0) + time.perf_counter() - started
