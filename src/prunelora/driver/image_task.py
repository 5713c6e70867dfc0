"""The image-classification task as the stage driver sees it (task.py): data, requests, measures, rows, records.

The data is loaded once and split per seed and request (data.scenarios); a model is measured by its logits
on the four splits, saved as logits/<model>_<method>[_<epochs>][_r<k>][_seed<s>].npz, and every metric and
attack computed from them (evaluation.py); the original models of registry subjects are trained once and
cached under cache/; U-LiRA's shadow pairs are scored per seed and model.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .. import storage
from ..config import RunConfig, data_key, fingerprint, to_dict
from ..data import Splits, load_dataset
from ..data.scenarios import get_scenario, request_splits, requests_of
from ..methods import Method, get_method
from ..metrics.evaluate import predict
from ..metrics.standalone import standalone_verdict, thresholds
from ..plan_report import describe_plan
from ..registry import IMAGE
from ..rows import make_row, measured_prefixes
from ..ulira_shadows import Shadows, check_capacity, ulira_scores
from .evaluation import evidence_key, measure
from .preflight import check_config
from .record import record_identity, stage_facts
from .registry import RegistrySubject, describe_model, model_meta
from .results import finish
from .subject import Outcome, Subject

if TYPE_CHECKING:  # the driver hands itself in
    from .stages import Experiment

Original = tuple[nn.Module, dict[str, Any]]  # the model, and its meta: "key" (its fingerprint), "training"


class ImageTask:
    """Image classification: a RunConfig's data, scenario and models (see the module docstring)."""

    name = IMAGE

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.config: RunConfig = exp.config
        d = self.config.data
        self.raw = load_dataset(d.dataset, d.data_root, d.download, stream=d.stream, progress=exp.progress,
                                id_column=d.id_column, image_size=d.image_size)
        checked = check_config(self.config, self.raw, exp.registry_models, exp.unlearns)
        if checked:
            exp.extra["plans"] = {name: describe_plan(model, plan, self.config.methods).to_dict()
                                  for name, (model, plan) in checked.items()}
        self.flip = d.flip if d.flip is not None else self.raw.mirror_invariant  # augmentation's mirror
        self.requests = requests_of(self.raw, d.scenario, d.forget_class, d.forget_ratio, d.requests, forget=d.forget,
                                    allow_empty_class=d.allow_empty_class, train_per_class=d.train_per_class,
                                    holdout_per_class=d.holdout_per_class)
        self._splits: dict[tuple[int, int], Splits] = {}
        self._originals: dict[tuple[str, int], Original] = {}
        self._subjects: dict[str, RegistrySubject] = {}
        self.references: dict[tuple[str, int], nn.Module] = {}  # (model, seed) -> the original, for relearn time
        if self.config.evidence.ulira:
            for seed in self.config.seeds:
                check_capacity(self.config.evidence.ulira, len(self.splits(seed).forget_train))

    # -- data and names ------------------------------------------------------------------------
    @property
    def sequential(self) -> bool:
        return get_scenario(self.config.data.scenario).sequential

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def method(self, name: str) -> Method:
        return get_method(name)

    def splits(self, seed: int, request: int = 1) -> Splits:
        """The splits after the first `request` requests of the scenario (1: the only one, unless sequential)."""
        if (seed, request) not in self._splits:
            d = self.config.data
            self._splits[(seed, request)] = request_splits(self.raw, self.requests[:request], d.train_per_class,
                                                           d.test_per_class, seed, self.exp.device, d.scenario,
                                                           d.stream, d.holdout_per_class, every=self.requests)
        return self._splits[(seed, request)]

    def forget_size(self, seed: int, request: int) -> int:
        return len(self.splits(seed, request).new_forget)

    def named_key(self, request: int) -> list[str]:
        """[] unless the requests name samples; else a digest of the ids requests 1..request name, so that a request
        file edited since a stage ran gives that stage another key (the config holds only the file's name)."""
        named = [[self.raw.train_ids[p] for p in r.named.positions] for r in self.requests[:request]
                 if r.named is not None]
        return [fingerprint("named", named)] if named else []

    def reached(self, seed: int) -> int:
        """The latest request measured for `seed` (1 before any)."""
        return max((r for s, r in self._splits if s == seed), default=1)

    def request_fields(self, seed: int, request: int) -> dict[str, Any]:
        """What every row says about the request it measures."""
        splits = self.splits(seed, request)
        return {"scenario": self.config.data.scenario, "request": request,
                "request_desc": self.requests[request - 1].describe(splits.class_names),
                "forgotten_classes": ",".join(map(str, splits.forget_classes)) or None}

    def export_path(self, subject: Subject | str, method: str, epochs: int | None, seed: int,
                    request: int = 1) -> Path:
        """The logits file of one model: logits/<model>_<method>[_<epochs>][_r<k>][_seed<s>].npz."""
        model = subject if isinstance(subject, str) else subject.name
        tag = f"{model}_{method}" + (f"_{epochs}" if epochs is not None else "")
        suffix = "" if len(self.config.seeds) == 1 else f"_seed{seed}"
        part = f"_r{request}" if self.sequential else ""
        return self.exp.out / "logits" / f"{tag}{part}{suffix}.npz"

    def subject(self, name: str) -> RegistrySubject:
        """The registry model `name` of this run, as a stage subject."""
        if name not in self._subjects:
            self._subjects[name] = RegistrySubject(name, self.config, self.exp.device, self.flip, self.exp.progress)
        return self._subjects[name]

    def family(self, name: str) -> str:
        """The model family whose recipes the methods use ("" for the user's own models)."""
        return self.subject(name).family if self.exp.registry_models else ""

    # -- originals -------------------------------------------------------------------------------
    def original(self, subject: Subject | str, seed: int) -> Original:
        """A registry model's original, trained on all classes, or loaded from the cache keyed by its
        configuration."""
        subject = self.subject(subject) if isinstance(subject, str) else subject
        name, exp = subject.name, self.exp
        if (name, seed) in self._originals:
            return self._originals[(name, seed)]
        cfg, splits = self.config, self.splits(seed)
        args = cfg.model_args.get(name, {})
        key = self.original_key(name, seed)
        path = exp.out / "cache" / f"{name}-{key}.safetensors"
        if path.is_file() and exp.verified(f"{name} original", [path]):
            model, meta = storage.load_model(path)
            exp.reused_stages += 1
            exp.reused_sec += float((meta.get("training") or {}).get("total_sec") or 0.0)
            self._originals[(name, seed)] = model.to(exp.device), {**meta, "key": key}
            return self._originals[(name, seed)]
        model, training, seconds = subject.train(splits.train, splits, seed, f"{name} original")
        exp.training_sec += seconds
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

    def original_rows(self, subject: Subject, seed: int, model: nn.Module, meta: dict[str, Any],
                      request: int = 1) -> list[dict]:
        """The original's row at a request: how much of everything forgotten so far it still knows."""
        self.references[(subject.name, seed)] = subject.evaluated(model)  # relearn time starts from it
        name, training = subject.name, meta["training"]
        params = sum(p.numel() for p in model.parameters())
        logits = self.export_path(name, "original", None, seed, request)
        metrics = self.evaluate(subject.evaluated(model), seed, logits, request, name)
        memory = ({"memory_kind": training["memory_kind"], "rss_growth_mb": training.get("rss_growth_mb")}
                  if "memory_kind" in training else {})
        return [make_row(name, "original", None, metrics, sec_per_epoch=training["sec_per_epoch"],
                         total_sec=training["total_sec"], peak_memory_mb=training["peak_memory_mb"],
                         trainable_params=training["trainable_params"], seed=seed, params=params, **memory,
                         model_desc=describe_model(name, self.config.model_args.get(name, {}), params),
                         logits_file=str(logits.relative_to(self.exp.out)), **self.request_fields(seed, request))]

    # -- stages ----------------------------------------------------------------------------------
    def stage_key(self, subject: Subject, method: str, seed: int, start_key: str, request: int) -> str:
        cfg, name = self.config, subject.name
        return fingerprint("stage", name, method, cfg.model_args.get(name, {}), data_key(cfg.data),
                           to_dict(cfg)["pretrain"], to_dict(cfg)["unlearn"], cfg.method_args, cfg.mia_max_per_side,
                           seed, start_key, request, *self.named_key(request), *record_identity())

    def evidence_key(self) -> str:
        return evidence_key(self.config)

    def evaluate(self, model: nn.Module, seed: int, logits_path: Path | None, request: int = 1,
                 name: str | None = None) -> dict:
        """Every metric on the splits after `request` requests (evaluation.measure).

        name: the model's name, whose original (self.references) relearn time starts from.
        """
        return measure(model, self.splits(seed, request), seed, self.config, logits_path,
                       self.references.get((name, seed)), self.exp.timings, self.sequential)

    def measure(self, subject: Subject, model: nn.Module, seed: int, request: int, method: str,
                epochs: int | None) -> dict[str, Any]:
        logits = self.export_path(subject, method, epochs, seed, request)
        return self.evaluate(subject.evaluated(model), seed, logits, request, subject.name)

    def row(self, subject: Subject, outcome: Outcome, index: int, metrics: dict[str, Any], seed: int,
            request: int, fields: dict[str, Any]) -> dict[str, Any]:
        run, name = outcome.run, subject.name
        snap = run.snapshots[index]
        params = sum(p.numel() for p in snap.model.parameters())
        logits = self.export_path(subject, run.method, snap.epochs, seed, request)
        return make_row(name, run.method, snap.epochs, metrics, sec_per_epoch=snap.sec_per_epoch,
                        total_sec=snap.total_sec, peak_memory_mb=snap.peak_memory_mb,
                        trainable_params=run.trainable_params, seed=seed, params=params,
                        memory_kind=snap.memory_kind, rss_growth_mb=snap.rss_growth_mb,
                        model_desc=describe_model(name, self.config.model_args.get(name, {}), params),
                        logits_file=str(logits.relative_to(self.exp.out)), **fields, **self.request_fields(seed, request),
                        **{k: v for k, v in run.info.items() if isinstance(v, (int, float, str, bool))})

    def verdict(self, metrics: dict[str, Any], seed: int, request: int) -> tuple[str, list[str], dict[str, Any]]:
        """The verdict a record states without Retrain (the forget set against unseen data), its reasons and
        thresholds."""
        verdict, reasons = standalone_verdict(metrics)
        return verdict, reasons, thresholds()

    def record_facts(self, seed: int, request: int, start: nn.Module) -> dict[str, Any]:
        return stage_facts(self.config, self.exp.device, self.splits(seed, request), request, start)

    def reevaluate(self, exp: Experiment, subject: Subject, rows: list[dict], seed: int,
                   request: int) -> list[dict]:
        """A finished stage's rows measured again from its saved models (new evidence settings): never retrained."""
        place, out = exp.place(seed, subject.name, request), []
        for i, row in enumerate(rows):
            path = subject.deliverable(place, row["method"], row["epochs"], i == len(rows) - 1)
            model = exp.load_deliverable(subject, path)
            metrics = self.measure(subject, model, seed, request, row["method"], row["epochs"])
            merged = {k: metrics.get(k, v) for k, v in row.items()  # the row's order; stale evidence dropped
                      if k in metrics or not k.startswith(measured_prefixes())}
            out.append({**merged, **metrics})
        return out

    def after_seed(self, subject: Subject, seed: int, rows: list[dict]) -> None:
        """U-LiRA's figures for every method of the run on this model and seed, into `rows`."""
        if self.config.evidence.ulira and isinstance(subject, RegistrySubject):
            self.add_ulira(subject, seed, rows)

    def finish(self, exp: Experiment, rows: list[dict], started: float, partial: bool = False) -> dict[str, Any]:
        return finish(exp, rows, started, partial)

    # -- U-LiRA --------------------------------------------------------------------------------
    def add_ulira(self, subject: RegistrySubject, seed: int, rows: list[dict]) -> None:
        started = time.perf_counter()
        exp, cfg, splits, d = self.exp, self.config, self.splits(seed), to_dict(self.config)

        def train(data, pair_seed: int, desc: str) -> tuple[nn.Module, float]:
            model, _, seconds = subject.train(data, splits, pair_seed, f"{subject.name} {desc}")
            return model, seconds

        def run(method: str, original: nn.Module, retain, forget, run_seed: int):
            outcome = subject.run_on(method, original, retain, forget, splits, run_seed)
            return [(s.epochs, s.model) for s in outcome.run.snapshots], sum(outcome.run.history.epoch_seconds)

        shadows = Shadows(train=train, run=run, logits=lambda model, data: predict(model, data, cfg.eval_batch_size),
                          verified=exp.verified)
        identity = (subject.name, subject.args, data_key(cfg.data), d["pretrain"], d["unlearn"], cfg.method_args, seed,
                    *self.named_key(1))
        scores = ulira_scores(shadows, splits.train, splits.forget_index, seed, cfg.evidence.ulira, cfg.methods,
                              identity, exp.seed_dir(seed) / "ulira" / subject.name)
        exp.training_sec += scores.training_sec
        for row in rows:
            row.update(scores.figures.get((row["method"], row["epochs"]), {}))
        exp.timings["ulira"] = exp.timings.get("ulira", 0.0) + time.perf_counter() - started

