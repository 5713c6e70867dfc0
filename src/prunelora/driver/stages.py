"""The stage driver: every path that trains or evaluates a model, on either task, runs its stages here.

A stage is one (seed, model, method, request). The driver fingerprints it (the task's key: the configuration
and the model it starts from), reuses it when a finished one with that fingerprint is on disk and its outputs
still match run.json, and otherwise runs the method through the subject (subject.py), measures the model at
every budget (the task's measures), has the subject save its deliverables, writes a record beside each
(record.py), and records the rows in seed<s>/stages/<model>[/r<k>]/<method>.json. What differs between image
classification and causal LMs is the task's (task.py): its data, measures, rows and results files.
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
from ..errors import UserError
from ..machine import LoadProbe
from . import stage_store
from .record import record_path, write_record
from .subject import Delivery, Outcome, StagePlace, Subject
from .task import Task

Original = tuple[nn.Module, dict[str, Any]]  # the model, and its meta: "key" (its fingerprint), "training"


@dataclass
class Experiment:
    """One configured run of a task: its stages, their reuse, records and warnings, outputs under config.out.

    make_task: builds the run's task from the Experiment: driver/image_task.py's ImageTask, driver/causal_lm.py's
    CausalLMTask.
    """

    config: Any  # the task's configuration (RunConfig, LMConfig)
    device: torch.device
    make_task: Callable[[Experiment], Task]
    progress: bool = True
    probe: LoadProbe | None = None  # the machine's load while this run is timed
    warnings: list[str] = field(default_factory=list)  # shown under the tables and on stderr
    registry_models: bool = True  # False when the model is the user's own (hf:, py:)
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level results (the plans, the user's model)
    unlearns: bool = True  # False: the command only evaluates (evaluate --model), no method is needed
    sign_key: Path | None = None  # an Ed25519 private key (PEM) that signs every record (record.write_record)

    def __post_init__(self) -> None:
        if self.config.out is None:
            self.config.out = "runs/reproduce"
        self.out = Path(self.config.out)
        self.training_sec = 0.0  # time inside training steps of what this run computed (not reused)
        self.reused_sec = 0.0  # recorded seconds of the stages reused from an earlier invocation
        self.reused_stages = 0
        self.timings: dict[str, float] = {}  # wall seconds of each part of the evidence (attacks, probe, ...)
        self.task: Task = self.make_task(self)

    # -- the image task's data, for the commands and the API that read it from the run ----------
    @property
    def raw(self):
        return self.task.raw

    @property
    def flip(self) -> bool:
        return self.task.flip

    @property
    def requests(self) -> list:
        return self.task.requests

    @property
    def references(self) -> dict:
        return self.task.references

    @property
    def sequential(self) -> bool:
        return self.task.sequential

    def splits(self, seed: int, request: int = 1):
        return self.task.splits(seed, request)

    def reached(self, seed: int) -> int:
        return self.task.reached(seed)

    def subject(self, name: str):
        return self.task.subject(name)

    def family(self, name: str) -> str:
        return self.task.family(name)

    def original(self, subject, seed: int) -> Original:
        return self.task.original(subject, seed)

    def original_key(self, name: str, seed: int) -> str:
        return self.task.original_key(name, seed)

    def evaluate(self, model: nn.Module, seed: int, logits_path: Path | None, request: int = 1,
                 name: str | None = None) -> dict:
        return self.task.evaluate(model, seed, logits_path, request, name)

    def request_fields(self, seed: int, request: int) -> dict[str, Any]:
        return self.task.request_fields(seed, request)

    def original_rows(self, subject: Subject, seed: int, model: nn.Module, meta: dict[str, Any],
                      request: int = 1) -> list[dict]:
        return self.task.original_rows(subject, seed, model, meta, request)

    # -- places ----------------------------------------------------------------------------------
    def seed_dir(self, seed: int) -> Path:
        return self.out / f"seed{seed}"

    def request_part(self, request: int) -> str:
        """The folder or tag part naming a request of a sequence ("" for single-request tasks)."""
        return f"r{request}" if self.task.sequential else ""

    def stage_folder(self, seed: int, name: str, request: int) -> dict[str, Path]:
        part = self.request_part(request)
        return {kind: self.seed_dir(seed) / kind / name / part if part else self.seed_dir(seed) / kind / name
                for kind in ("stages", "models")}

    def place(self, seed: int, name: str, request: int) -> StagePlace:
        return StagePlace(self.seed_dir(seed) / "models" / name, self.request_part(request))

    # -- the run -------------------------------------------------------------------------------
    def reproduce_rows(self) -> list[dict]:
        """Every seed x model x request: the original's row, then each method's rows (registry models)."""
        return self.method_rows([self.task.subject(name) for name in self.config.models], self.task.original)

    def method_rows(self, subjects: list[Subject], original_of: Callable[[Subject, int], Original],
                    started: float | None = None) -> list[dict]:
        """Each method applied request after request to the model its previous request produced.

        Retrain restarts from scratch on the cumulative retain set at every request. In a sequence
        the results files are written after every request.
        """
        rows: list[dict] = []
        started = time.perf_counter() if started is None else started
        task = self.task
        for seed in self.config.seeds:
            for subject in subjects:
                original, meta = original_of(subject, seed)
                first = len(rows)
                chain = {m: ((lambda model=original: model), meta["key"]) for m in self.config.methods}
                for request in range(1, task.request_count + 1):
                    rows += task.original_rows(subject, seed, original, meta, request)
                    for method in self.config.methods:
                        start, start_key = chain[method]
                        stage, final, key = self.stage(subject, method, start, start_key, seed, request)
                        rows += stage
                        chain[method] = (final, key)
                    if task.sequential and request < task.request_count:
                        task.finish(self, list(rows), started, partial=True)
                after = getattr(task, "after_seed", None)
                if after is not None:
                    after(subject, seed, rows[first:])
        return rows

    # -- stages --------------------------------------------------------------------------------
    def stage(self, subject: Subject, method: str, start: Callable[[], nn.Module], start_key: str, seed: int,
              request: int = 1) -> tuple[list[dict], Callable[[], nn.Module], str]:
        """One (model, method, request) stage: its rows, its final model (loaded lazily) and its key.

        Reused when finished with the same configuration and the same starting model.
        """
        task, name = self.task, subject.name
        key = task.stage_key(subject, method, seed, start_key, request)
        marker = self.stage_folder(seed, name, request)["stages"] / f"{method}.json"
        reused = self.reused(subject, method, key, marker, seed, request)
        if reused is not None:
            return (*reused, key)
        started = time.perf_counter()
        if task.method(method).uses_forget and task.forget_size(seed, request) == 0:
            raise UserError(f"{method} needs forget data, but the request leaves the forget set empty "
                            "(raise --train-per-class or --forget-ratio)")
        start_model = start()
        outcome = subject.run(method, start_model, task.splits(seed, request), seed, f"{name} {method}")
        self.training_sec += sum(outcome.run.history.epoch_seconds)
        self.warnings += [f"{name} {method}: {w}" for w in outcome.warnings]
        with ledger.capture() as outputs:
            rows, final_path = self.deliver(subject, outcome, start_model, seed, request)
        stage_store.write(marker, key, outputs, rows=rows, stage_sec=time.perf_counter() - started,
                          final=str(final_path.relative_to(self.out)), evidence=task.evidence_key(),
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
            if saved.get("evidence") != self.task.evidence_key():
                saved["rows"] = self.task.reevaluate(self, subject, saved["rows"], seed, request)
                storage.write_json(marker, {**saved, "evidence": self.task.evidence_key()})
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
        """Measure the model at every budget, have the subject save it and write its record; the rows and the
        last budget's path."""
        task, rows, run, name = self.task, [], outcome.run, subject.name
        place = self.place(seed, name, request)
        path = place.models
        shared = task.record_facts(seed, request, start)  # every budget's record holds these
        previous = (record_path(subject.deliverable(self.place(seed, name, request - 1), run.method,
                                                    run.snapshots[-1].epochs, True)) if request > 1 else None)
        for i, snap in enumerate(run.snapshots):
            last = i == len(run.snapshots) - 1
            metrics = task.measure(subject, snap.model, seed, request, run.method, snap.epochs)
            path = subject.deliverable(place, run.method, snap.epochs, last)
            note = outcome.notes[i] if outcome.notes else {}
            fields = subject.save(path, Delivery(run.method, run, snap, note, metrics, last, start,
                                                 task.splits(seed, request), seed, request, self.out))
            write_record(path, shared, task=task.name, model=name, loader=subject.loader(), method=run.method, epochs=snap.epochs,
                         seed=seed, metrics=metrics, previous=previous, verdict=task.verdict(metrics, seed, request),
                         cost={"sec_per_epoch": snap.sec_per_epoch, "total_sec": snap.total_sec,
                               "peak_memory_mb": snap.peak_memory_mb, "trainable_params": run.trainable_params},
                         sign_key=self.sign_key)
            rows.append(task.row(subject, outcome, i, metrics, seed, request, fields))
        return rows, path

    def verified(self, what: str, paths: list[Path]) -> bool:
        """Whether a finished stage's outputs are exactly as written (size and sha256 in run.json): a stage
        whose files were truncated, edited or removed is run again, and the results say so."""
        return stage_store.verified(what, paths, self.warnings)

    def evidence_key(self) -> str:
        return self.task.evidence_key()

    @staticmethod
    def load_deliverable(subject: Subject, path: Path) -> nn.Module:
        if not path.exists():
            raise UserError(f"a finished stage's model is missing ({path}); rerun with --overwrite")
        return subject.load(path)
