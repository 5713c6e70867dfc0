"""The causal-LM task as the stage driver sees it (task.py), and its model as a stage subject.

    prunelora reproduce --task causal-lm --seeds 0,1,2     # the embedded benchmark
    prunelora unlearn --task causal-lm --model hf:DIR --dataset train.jsonl --forget forget.txt

Per seed: the original (the user's model, or the benchmark's small model trained from scratch until it has
memorised the answers, cached under cache/), then each method through the one training loop, measured on
the forget, retain and holdout examples, exactly as the image task's stages are run, reused, recorded and
warned about (stages.py). Deliverables, per seed, model and method (seed<s>/models/<model>/<method>/):
model/ (save_pretrained, adapters merged, with the tokenizer), adapter/ (LoRA methods: the PEFT adapter,
and base/ the model it adapts) and record.json; seed<s>/examples/<model>/<method>.jsonl holds every
per-example measure. The figures measured against Retrain (TOFU's forget quality, MUSE's PrivLeak) and the
verdicts are derived when the run finishes, from those exports.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

from .. import storage
from ..config import fingerprint
from ..config.causal_lm import LMConfig, key
from ..data.text.examples import (
    Example,
    LMSplits,
    forget_request,
    from_rows,
    read_examples,
    request_digest,
    split,
    to_rows,
)
from ..data.text.synthetic import BenchmarkSpec, forget_people, make_people_benchmark, word_tokenizer
from ..data.text.tofu import TofuData, is_tofu, read_tofu, split_for_ratio
from ..data.text.tokens import encode, format_name
from ..errors import UserError
from ..machine import facts
from ..methods import Method, get_method, method_names
from ..metrics.causal_lm import measure as measures
from ..metrics.causal_lm import verdicts
from ..metrics.causal_lm.robustness import RelearnAttack, robustness_settings
from ..models.causal_lm.loading import load_causal_lm, tiny_model, weight_dtype
from ..registry import CAUSAL_LM
from ..report import causal_lm_page as page
from ..report.causal_lm_table import table, write_csv
from ..runner import MethodRun, Snapshot
from ..runner.causal_lm import train_from_scratch, unlearn_with
from ..storage import read_jsonl, write_jsonl
from ..train import History
from .record import portable_paths, record_identity, weights_digest
from .subject import Delivery, Outcome, StagePlace

if TYPE_CHECKING:
    from .stages import Experiment

IMAGE_ONLY = ("momentum", "nesterov", "augment", "flip")  # training settings AdamW on token sequences never uses
PROMPT_CUE = {"question": "Question : Answer :", "answer": "", "paraphrased_answer": "", "perturbed_answer": []}
EVIDENCE_VERSION = 2  # raised when the measures change: finished stages are measured again


def read_tofu_split(config: LMConfig) -> TofuData | None:
    """TOFU's files (--dataset tofu:DIR) with the forget split --forget-ratio names, or None for other data."""
    d = config.data
    if not is_tofu(d.dataset):
        return None
    if d.forget:
        raise UserError("--dataset tofu:DIR forgets one of TOFU's own splits: choose it with --forget-ratio 0.01, "
                        "0.05 or 0.1 (forget01, forget05, forget10) and leave out --forget")
    if d.holdout:
        raise UserError("--dataset tofu:DIR reads its holdout from TOFU's files (holdout01/05/10): leave out "
                        "--holdout")
    return read_tofu(d.dataset, split_for_ratio(d.forget_ratio))


def dataset_examples(config: LMConfig) -> tuple[str, list[Example], list[Example], list[dict]]:
    """(kind, train, holdout, the embedded benchmark's rows or []) of the configured data, read once."""
    d = config.data
    tofu = read_tofu_split(config)
    if tofu is not None:
        return "qa", tofu.train, tofu.holdout, []
    if d.dataset == "people":
        train, holdout = make_people_benchmark(BenchmarkSpec(d.people, d.questions, d.holdout_people, d.perturbed, 0))
        kind, examples = from_rows(train, d, "people")
        held = from_rows(holdout, d, "people")[1] if holdout else []
        if d.holdout:
            held = read_examples(d.holdout, d, kind)[1]
        return kind, examples, held, train + holdout
    kind, examples = read_examples(d.dataset, d)
    held = read_examples(d.holdout, d, kind)[1] if d.holdout else []
    return kind, examples, held, []


def request_ids(config: LMConfig, kind: str, train: list[Example], seed: int,
                warnings: list[str]) -> tuple[list[str], str]:
    """The forget ids of a seed and how the request was given; what a reader must know (copies of the named
    examples forgotten with them) goes into `warnings`, once."""
    d = config.data
    if is_tofu(d.dataset):
        tofu = read_tofu_split(config)
        return [ex.id for ex in tofu.forget], tofu.request
    if d.forget:
        ids, notes = forget_request(d.forget, train, kind, d)
        warnings.extend(n for n in notes if n not in warnings)
        return ids, Path(d.forget).name
    if d.dataset == "people":
        rows = [{"id": ex.id, "person": ex.id.split("-")[0]} for ex in train]
        return forget_people(rows, d.forget_ratio, seed), f"{d.forget_ratio:.0%} of the people, drawn per seed"
    raise UserError("--forget FILE: name what to forget (a file of ids, one a line, or a .jsonl of examples)")


def file_stem(method: str) -> str:
    """A method's name as a file or folder name ("npo@prune+lora" -> "npo_at_prune+lora")."""
    return method.replace("@", "_at_")


class CausalLMTask:
    """Causal LMs on question/answer or plain-text examples (see the module docstring)."""

    name = CAUSAL_LM
    sequential = False
    request_count = 1

    def __init__(self, exp: Experiment, command: str) -> None:
        self.exp, self.command = exp, command
        config: LMConfig = exp.config
        self.config = config
        self.dtype = weight_dtype(config.precision, exp.device)
        config.methods = method_names(list(config.methods), task=CAUSAL_LM)
        if not config.methods:
            raise UserError("--methods names no method")
        for name in config.methods:  # every objective's own values, checked before anything is written
            get_method(name, CAUSAL_LM).check(config.method_args)
        self.user = config.model.model
        self.tofu = read_tofu_split(config)  # TOFU's own files: its evaluation sets, as TOFU measures them
        self.kind, self.train, self.holdout, self.rows = dataset_examples(config)
        if self.user:
            self.base_model, self.tokenizer = load_causal_lm(self.user, torch.device("cpu"))
        else:
            texts = self.rows or to_rows(self.train + self.holdout, config.data, self.kind)
            self.tokenizer = word_tokenizer(texts + [PROMPT_CUE])
        every = self.train + self.holdout + self.evaluated_only()
        for start in range(0, len(every), 256):  # every example fits, before anything runs
            encode(self.tokenizer, every[start:start + 256], config.data.max_length, torch.device("cpu"),
                   config.data.prompt_template)
        self.requests = {seed: request_ids(config, self.kind, self.train, seed, exp.warnings) for seed in config.seeds}
        self._splits: dict[int, LMSplits] = {}
        self.memorisation: dict[str, Any] | None = None  # check_memorised's figures (the user's model)
        self.originals: dict[int, dict[str, Any]] = {}  # seed -> the original's figures
        # what the files hold, not only their names: another dataset or model under the same path is another run,
        # and a cached original or finished stage of the old one is never reused for it
        self.sources = {"data_sha256": request_digest(self.train + self.holdout + self.evaluated_only())}
        if self.user:
            self.sources["model_sha256"] = storage.file_digest(self.user[len("hf:"):])

    # -- data and names ------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What the run's folder is claimed for: the configuration and what its files hold."""
        return {"task": CAUSAL_LM, **self.config.identity(), **self.sources}

    def method(self, name: str) -> Method:
        return get_method(name, CAUSAL_LM)

    def splits(self, seed: int, request: int = 1) -> LMSplits:
        if seed not in self._splits:
            ids, request_desc = self.requests[seed]
            self._splits[seed] = split(self.kind, self.train, ids, self.holdout, request_desc)
        return self._splits[seed]

    def forget_size(self, seed: int, request: int) -> int:
        return len(self.splits(seed).forget)

    def evaluated_only(self) -> list[Example]:
        """Examples measured but never trained on or forgotten: TOFU's retain_perturbed rows that are no retain
        example, its real-author and world-fact sets ([] for other data)."""
        if self.tofu is None:
            return []
        trained = {ex.id for ex in self.tofu.train}
        sets = self.tofu.eval_sets()
        return [ex for name in ("retain", "real_authors", "world_facts") for ex in sets[name] if ex.id not in trained]

    def sets(self, seed: int) -> dict[str, list[Example]]:
        """What a model is measured on: the forget set, a seeded draw of the retain set, the holdout; on TOFU's
        files, the sets TOFU measures (retain_perturbed, the real authors and world facts too)."""
        if self.tofu is not None:
            return self.tofu.eval_sets()
        splits = self.splits(seed)
        return {"forget": splits.forget, "retain": measures.retain_sample(splits.retain, self.config.data.eval_retain, seed),
                "holdout": splits.holdout}

    def subject(self) -> LMSubject:
        name = Path(self.user[len("hf:"):]).name if self.user else self.config.model.family
        return LMSubject(name or "model", self)

    def export_path(self, subject: LMSubject | str, method: str, epochs: int | None, seed: int,
                    request: int = 1) -> Path:
        name = subject if isinstance(subject, str) else subject.name
        return self.exp.out / f"seed{seed}" / "examples" / name / f"{file_stem(method)}.jsonl"

    def write_data(self) -> None:
        """The embedded benchmark as files a user can rerun `unlearn --task causal-lm` on (data/)."""
        if not self.rows:
            return
        trained = {e.id for e in self.train}
        write_jsonl([r for r in self.rows if r["id"] in trained], self.exp.out / "data" / "train.jsonl")
        write_jsonl(to_rows(self.holdout, self.config.data, self.kind), self.exp.out / "data" / "holdout.jsonl")

    def train_path(self) -> Path | str:
        """The training data as a file (the embedded benchmark's: written under data/; TOFU's: its folder)."""
        if self.tofu is not None:
            return "tofu:" + str(Path(self.config.data.dataset.removeprefix("tofu:")).resolve())
        return self.exp.out / "data" / "train.jsonl" if self.rows else Path(self.config.data.dataset)

    def holdout_path(self) -> Path | None:
        if self.config.data.holdout:
            return Path(self.config.data.holdout)
        return self.exp.out / "data" / "holdout.jsonl" if self.rows and self.holdout else None

    def check_memorised(self) -> None:
        """Before anything is written: the user's original must know the forget set in the run's prompt format
        (metrics/causal_lm/verdicts.knows_forget_set), else one line with the figures and the fix (--force runs
        anyway, and the results say so). The embedded benchmark's original is trained until it has memorised
        the answers: it is checked by that training."""
        if not self.user:
            return
        seed = self.config.seeds[0]
        d = self.config.data
        model = copy.deepcopy(self.base_model).to(self.exp.device, self.dtype)
        summary = measures.measure(model, self.tokenizer, self.sets(seed), d.max_length, self.exp.device,
                                   d.max_new_tokens, d.prompt_template)["summary"]
        knows, figures = verdicts.knows_forget_set(summary)
        form = format_name(self.tokenizer, d.prompt_template).replace("\n", "\\n")
        self.memorisation = {"knows": knows, "figures": figures, "format": form, "forced": bool(self.config.force),
                             "thresholds": dict(verdicts.MEMORISATION)}
        if knows:
            return
        if not self.config.force:
            raise UserError(f"the original does not know the forget set in the prompt format {form!r} ({figures}): "
                            "give your model's format with --prompt-template (e.g. \"{question} \" for question + ' ' + "
                            "answer), or --force to unlearn anyway")
        self.exp.warnings.append(f"the memorisation check failed ({figures}) in the prompt format {form!r}: the run was "
                                 "forced (--force); what it unlearns may not be what the model knows")

    # -- models ----------------------------------------------------------------------------------
    def fresh(self, seed: int) -> nn.Module:
        """The initialisation the original started from (the embedded model), or the user's architecture
        initialised with the seed (Retrain of a user's model)."""
        device = self.exp.device
        if self.user:
            import transformers as T

            torch.manual_seed(seed)
            return T.AutoModelForCausalLM.from_config(self.base_model.config).to(device, self.dtype)
        m = self.config.model
        return tiny_model(m.family, len(self.tokenizer), seed, self.tokenizer, hidden=m.hidden, layers=m.layers,
                          heads=m.heads, intermediate=m.intermediate,
                          max_positions=max(64, self.config.data.max_length)).to(device, self.dtype)

    def original(self, subject: LMSubject, seed: int) -> tuple[nn.Module, dict[str, Any]]:
        """(model, meta): the user's model, or the embedded one trained (or reused from cache/); meta["key"] is
        its fingerprint (the first stage's start), meta["training"] what training it cost."""
        exp, device = self.exp, self.exp.device
        if self.user:
            model = copy.deepcopy(self.base_model).to(device, self.dtype)
            return model, {"key": fingerprint("user model", self.sources), "source": self.user,
                           "training": {"sec_per_epoch": None, "total_sec": 0.0, "peak_memory_mb": None}}
        m, d = self.config.model, self.config.data
        data = {k: v for k, v in dataclasses.asdict(d).items()
                if k not in ("forget", "forget_ratio", "eval_retain", "max_new_tokens")}
        ident = fingerprint("original", data, dataclasses.asdict(m), dataclasses.asdict(self.config.pretrain), seed,
                            self.sources)
        folder = exp.out / "cache" / f"original-{ident[:16]}"
        stamp = folder / "prunelora.json"
        if stamp.is_file() and exp.verified(f"seed {seed} original", [stamp]) and \
                _intact(exp, f"seed {seed} original", folder):
            import transformers as T

            meta = storage.read_json(stamp)
            model = T.AutoModelForCausalLM.from_pretrained(str(folder)).to(device, self.dtype)
            exp.reused_stages += 1
            exp.reused_sec += float(meta["training"]["total_sec"])
            return model, {**meta, "key": ident}
        model = self.fresh(seed)
        data = encode(self.tokenizer, self.splits(seed).train, d.max_length, device, d.prompt_template)
        reached = train_from_scratch(model, data, self.config, seed, f"original seed {seed}", exp.progress)
        exp.training_sec += reached["seconds"]
        if reached["memorised"] < self.config.pretrain.memorised:
            raise UserError(f"the embedded original memorised {reached['memorised']:.1%} of the answers after "
                            f"{reached['epochs']} epochs (< {self.config.pretrain.memorised:.0%}): raise "
                            "--set pretrain.epochs=... or pretrain.lr")
        meta = {"source": f"embedded {m.family}", "memorised": reached["memorised"], "epochs": reached["epochs"],
                "training": {"sec_per_epoch": reached["seconds"] / max(1, reached["epochs"]),
                             "total_sec": reached["seconds"], "peak_memory_mb": None}}
        with storage.atomic_dir(folder) as tmp:
            model.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            storage.write_json(tmp / "prunelora.json", meta)
        return model, {**meta, "key": ident}

    def deliver_original(self, subject: LMSubject, seed: int, model: nn.Module, meta: dict[str, Any]) -> None:
        """The trained original as a user would hold it (seed<s>/models/<model>/original/model): the starting
        point of `unlearn --task causal-lm`."""
        folder = self.exp.seed_dir(seed) / "models" / subject.name / "original"
        stamp = folder / "prunelora.json"
        kept = {k: v for k, v in meta.items() if k != "key"}
        if stamp.is_file() and _intact(self.exp, f"seed {seed} original's copy", folder) \
                and storage.read_json(stamp) == kept:
            return
        with storage.atomic_dir(folder) as tmp:
            model.save_pretrained(str(tmp / "model"))
            self.tokenizer.save_pretrained(str(tmp / "model"))
            storage.write_json(tmp / "prunelora.json", kept)

    # -- stages ----------------------------------------------------------------------------------
    def stage_key(self, subject: LMSubject, method: str, seed: int, start_key: str, request: int) -> str:
        splits, chosen = self.splits(seed), self.method(method)
        return key(self.config, method, seed, splits.request, request_digest(splits.forget),
                   self.config.method_args.get(method), self.config.method_args.get(chosen.objective), self.sources,
                   start_key, *record_identity())

    def evidence_key(self) -> str:
        d = self.config.data
        return fingerprint("causal-lm evidence", EVIDENCE_VERSION, d.eval_retain, d.max_new_tokens,
                           dataclasses.asdict(self.config.evidence))

    def measure(self, subject: LMSubject, model: nn.Module, seed: int, request: int, method: str,
                epochs: int | None) -> dict[str, Any]:
        """Every summary figure of one model; its per-example measures exported (export_path)."""
        d = self.config.data
        measured = measures.measure(model, self.tokenizer, self.sets(seed), d.max_length, self.exp.device,
                                    d.max_new_tokens, d.prompt_template, *self.robustness(seed))
        examples = [{"split": name, **{k: v[i] for k, v in values.items()}}
                    for name, values in measured["per_split"].items() for i in range(len(values["id"]))]
        write_jsonl(examples, self.export_path(subject, method, epochs, seed))
        return dict(measured["summary"])

    def robustness(self, seed: int) -> tuple[dict[str, str | None] | None, RelearnAttack | None]:
        """What the robustness measures take (config.evidence): the other prompt formats, the relearning attack."""
        return robustness_settings(self.config.evidence, self.tokenizer, self.config.data.prompt_template, seed)

    def verdict(self, metrics: dict[str, Any], seed: int, request: int) -> tuple[str, list[str], dict[str, Any]]:
        """The verdict a record states without Retrain (forget vs holdout), its reasons and thresholds."""
        splits = self.splits(seed)
        verdict, reasons = verdicts.without_retrain(metrics, len(splits.forget), len(splits.holdout),
                                                    self.originals.get(seed))
        return verdict, reasons, dict(verdicts.THRESHOLDS)

    def _fields(self, method: Method, seed: int) -> dict[str, Any]:
        splits = self.splits(seed)
        return {"label": method.label, "objective": "retrain" if method.exact else method.objective,
                "surgery": method.surgery, "seed": seed, "request": splits.request, "forget_n": len(splits.forget),
                "retain_n": len(splits.retain), "holdout_n": len(splits.holdout)}

    def row(self, subject: LMSubject, outcome: Outcome, index: int, metrics: dict[str, Any], seed: int,
            request: int, fields: dict[str, Any]) -> dict[str, Any]:
        run = outcome.run
        cost = outcome.notes[index]["cost"] if outcome.notes else {}
        method = self.method(run.method)
        return {"model": subject.name, "method": run.method, "epochs": run.snapshots[index].epochs,
                **self._fields(method, seed), **metrics, **cost, **fields,
                "examples_file": str(self.export_path(subject, run.method, None, seed).relative_to(self.exp.out))}

    def record_facts(self, seed: int, request: int, start: nn.Module) -> dict[str, Any]:
        splits = self.splits(seed)
        digest = request_digest(splits.forget)
        return {"request": {"scenario": "named", "request": 1, "classes": None, "desc": splits.request,
                            "ids": [ex.id for ex in splits.forget], "samples": len(splits.forget),
                            "forget_sha256": digest, "all_forgotten_sha256": digest},
                "model_before": {"weights_sha256": weights_digest(start)},
                "config": portable_paths(dataclasses.asdict(self.config), ("dataset", "holdout", "forget")),
                "prompt_format": format_name(self.tokenizer, self.config.data.prompt_template),
                "original_evidence": dict(self.originals.get(seed) or {}),
                "data": {"train": str(self.train_path() if self.tofu is not None else self.train_path().resolve()),
                         "holdout": str(self.holdout_path().resolve()) if self.holdout_path() else None},
                "environment": facts(self.exp.device)}

    def original_rows(self, subject: LMSubject, seed: int, model: nn.Module, meta: dict[str, Any],
                      request: int = 1) -> list[dict[str, Any]]:
        """The original's row: what it knows of the forget set before anything is unlearned."""
        if not self.user:
            self.deliver_original(subject, seed, model, meta)
        metrics = self.measure(subject, model, seed, 1, "original", None)
        self.originals[seed] = dict(metrics)  # what the verdicts read the methods' utility and fall against
        training = meta.get("training") or {}
        row = {"model": subject.name, "method": "original", "epochs": None, "label": "Original",
               "objective": "original", "surgery": "none", "seed": seed, "request": self.splits(seed).request,
               "forget_n": len(self.splits(seed).forget), "retain_n": len(self.splits(seed).retain),
               "holdout_n": len(self.splits(seed).holdout), **metrics,
               "seconds": training.get("total_sec"), "params": sum(p.numel() for p in model.parameters()),
               "source": meta.get("source"), "model_before_sha256": weights_digest(model),
               "examples_file": str(self.export_path(subject, "original", None, seed).relative_to(self.exp.out))}
        if "memorised" in meta:
            row["memorised"] = meta["memorised"]
        return [row]

    def reevaluate(self, exp: Experiment, subject: LMSubject, rows: list[dict], seed: int,
                   request: int) -> list[dict]:
        """A finished stage's rows measured again from its saved model (the measures changed): never retrained."""
        out = []
        for row in rows:
            path = subject.deliverable(exp.place(seed, subject.name, request), row["method"], row["epochs"], True)
            model = exp.load_deliverable(subject, path)
            metrics = self.measure(subject, model, seed, request, row["method"], row["epochs"])
            out.append({**{k: v for k, v in row.items() if k not in metrics}, **metrics})
        return out

    # -- results ---------------------------------------------------------------------------------
    def finish(self, exp: Experiment, rows: list[dict], started: float, partial: bool = False) -> dict[str, Any]:
        """Against Retrain (forget quality, PrivLeak, its verdict) and without it, per seed; then results.json,
        results.md, config.yaml and report.html."""
        rows = [dict(r) for r in rows]
        for seed in sorted({r["seed"] for r in rows}):
            mine = [r for r in rows if r["seed"] == seed]
            retrain = next((r for r in mine if r["method"] == "retrain"), None)
            original = next((r for r in mine if r["method"] == "original"), None)
            splits = self.splits(seed)
            for row in mine:
                # the original (before unlearning) gets no comparison with Retrain, only the verdict without it
                if row["method"] != "original" and retrain is not None and row is not retrain:
                    row.update(self.compare(row, retrain))
                    row["verdict"], row["verdict_reasons"] = verdicts.with_retrain(row, retrain, original)
                elif row["method"] != "original" and row is retrain:
                    if "forget_truth_ratio" in row:
                        row["forget_quality"] = 1.0
                    if "mia_min_k_auc" in row:
                        row["privleak"] = 0.0
                row["standalone_verdict"], row["standalone_reasons"] = verdicts.without_retrain(
                    row, len(splits.forget), len(splits.holdout), None if row is original else original)
        results = {"task": CAUSAL_LM, "command": self.command, "out": str(exp.out), "rows": rows,
                   "config": dataclasses.asdict(self.config),
                   "method_settings": {m: self.method_settings(m) for m in self.config.methods},
                   "thresholds": verdicts.THRESHOLDS, "machine": facts(exp.device), "warnings": list(exp.warnings),
                   "prompt_format": format_name(self.tokenizer, self.config.data.prompt_template),
                   "memorisation": self.memorisation,
                   "wall_sec": time.perf_counter() - started + exp.reused_sec,
                   "reused": {"stages": exp.reused_stages, "sec": exp.reused_sec}}
        storage.write_json(exp.out / "results.json", results)
        storage.write_text(exp.out / "results.md", table(results) + "\n")
        write_csv(results, exp.out)
        storage.write_text(exp.out / "config.yaml", yaml.safe_dump(dataclasses.asdict(self.config), sort_keys=False))
        page.write(results, exp.out)
        return results

    def compare(self, row: dict[str, Any], retrain: dict[str, Any]) -> dict[str, float]:
        """Forget quality (from both models' exported truth ratios) and PrivLeak (from both Min-K % AUCs)."""
        out: dict[str, float] = {}
        mine, theirs = self._forget_ratios(row), self._forget_ratios(retrain)
        if mine and theirs:
            out["forget_quality"] = measures.scores.forget_quality(mine, theirs)
        if "mia_min_k_auc" in row and "mia_min_k_auc" in retrain:
            out["privleak"] = measures.scores.priv_leak(row["mia_min_k_auc"], retrain["mia_min_k_auc"])
        return out

    def _forget_ratios(self, row: dict[str, Any]) -> list[float]:
        path = self.exp.out / row["examples_file"]
        if not path.is_file():
            return []
        return [e["truth_ratio"] for e in read_jsonl(path) if e.get("split") == "forget" and "truth_ratio" in e]

    def method_settings(self, name: str) -> dict[str, Any]:
        method = self.method(name)
        if method.exact:
            return {"recipe": dataclasses.asdict(self.config.pretrain), "from": "the original's initialisation"}
        objective = method.objective_for(None, self.config.method_args)
        from ..methods.causal_lm.surgery import LMContext

        ctx = LMContext(self.config.unlearn, self.config.pretrain, self.config.method_args)
        optim = {k: v for k, v in dataclasses.asdict(ctx.optim_settings(objective.args, method)).items()
                 if k not in IMAGE_ONLY}
        own = {k: v for k, v in objective.own_settings().items() if k not in IMAGE_ONLY and v is not None}
        return {"objective": method.objective, "surgery": method.surgery, **optim,
                "epochs": self.config.unlearn.epochs, "own": own,
                "surgery_settings": dataclasses.asdict(self.config.unlearn)}


def _intact(exp: Experiment, what: str, folder: Path) -> bool:
    from . import stage_store

    return stage_store.intact_folder(what, folder, exp.warnings)


@dataclasses.dataclass
class LMSubject:
    """The causal LM of a run (the embedded benchmark's or the user's) as the driver's subject."""

    name: str
    task: CausalLMTask
    family: str = ""

    def fresh(self, splits: LMSplits, start: nn.Module) -> nn.Module:
        return self.task.fresh(self.task.config.seeds[0])

    def run(self, method: str, start: nn.Module, splits: LMSplits, seed: int, desc: str) -> Outcome:
        """The method on `start` (left untouched), as one budget: the configured unlearning epochs."""
        task, config = self.task, self.task.config
        device = task.exp.device
        d = config.data
        retain = encode(task.tokenizer, splits.retain, d.max_length, device, d.prompt_template)
        forget = encode(task.tokenizer, splits.forget, d.max_length, device, d.prompt_template)
        chosen = task.method(method)
        run = unlearn_with(chosen, start, retain, forget, config, seed, task.exp.progress,
                           fresh=lambda: task.fresh(seed))
        delivered = run.delivered()
        cost = run.cost
        epochs = None if chosen.exact else config.unlearn.epochs
        seconds = float(cost["seconds"])
        kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_tensor_peak"
        snapshot = Snapshot(epochs, delivered, seconds / max(1, epochs or 1), seconds, cost["peak_memory_mb"], kind)
        history = History(epoch_seconds=[seconds])
        info = {k: v for k, v in cost.items() if isinstance(v, (int, float, str, bool))}
        method_run = MethodRun(method, [snapshot], int(cost["trainable_params"]), int(cost["params"]), run.prepared,
                               history, 0.0, cost["peak_memory_mb"] or 0.0, kind, info)
        return Outcome(method_run, notes=[{"cost": cost}])

    def evaluated(self, model: nn.Module) -> nn.Module:
        return model

    def final(self, outcome: Outcome) -> nn.Module:
        return outcome.run.snapshots[-1].model

    def deliverable(self, place: StagePlace, method: str, epochs: int | None, last: bool) -> Path:
        return place.models / file_stem(method)

    def save(self, path: Path, delivery: Delivery) -> dict[str, Any]:
        """model/ (adapters merged, with the tokenizer) and, for LoRA methods, adapter/ with the base it adapts."""
        prepared, tokenizer = delivery.run.prepared, self.task.tokenizer
        with storage.atomic_dir(path) as tmp:
            delivery.snapshot.model.save_pretrained(str(tmp / "model"))
            tokenizer.save_pretrained(str(tmp / "model"))
            if prepared.save_adapters is not None:
                prepared.save_adapters(tmp / "adapter")
                prepared.adapter_base().save_pretrained(str(tmp / "adapter" / "base"))
                tokenizer.save_pretrained(str(tmp / "adapter" / "base"))
        return {"model_dir": str(path.relative_to(delivery.out))}

    def load(self, path: Path) -> nn.Module:
        import transformers as T

        return T.AutoModelForCausalLM.from_pretrained(str(path / "model")).to(self.task.exp.device, self.task.dtype)

    def loader(self) -> dict[str, Any]:
        return {"kind": "hf-causal-lm",
                "load": "transformers.AutoModelForCausalLM.from_pretrained('model'); adapters: "
                        "peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('adapter/base'), "
                        "'adapter')"}
