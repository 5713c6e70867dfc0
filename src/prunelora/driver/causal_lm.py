"""The causal-LM task end to end: data -> original -> every method -> measures -> deliverables and records.

    prunelora reproduce --task causal-lm --seeds 0,1,2     # the embedded benchmark, the issue's table
    prunelora unlearn --task causal-lm --model hf:DIR --dataset train.jsonl --forget forget.txt

Per seed: the original (the user's model, or the benchmark's small model trained from scratch until it
has memorised the answers, cached under cache/), then each method (Retrain first: the others are compared
with it) through the one training loop (train.fit), measured on forget, retain and holdout examples. A
stage (seed, method) is kept in seed<s>/stages/<method>.json with its fingerprint: a rerun reuses it.
Deliverables, per seed and method (seed<s>/models/<method>/): model/ (save_pretrained, adapters merged,
with the tokenizer), adapter/ (LoRA methods: the PEFT adapter, and base/ the model it adapts), record.json
(the request's ids and digest, the weights' digests, the config, the measures and verdicts), and
seed<s>/examples/<method>.jsonl: every per-example measure. Per run: results.json, results.md (the table),
report.html (lm/page.py) and config.yaml (`--config config.yaml` runs it again).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from .. import ledger, run_folder, storage
from ..config import fingerprint
from ..config.causal_lm import LMConfig, key
from ..data.text.examples import (
    Example,
    LMSplits,
    from_rows,
    read_examples,
    read_request,
    request_digest,
    split,
    to_rows,
)
from ..data.text.synthetic import BenchmarkSpec, forget_people, make_people_benchmark, word_tokenizer
from ..data.text.tokens import encode
from ..errors import UserError
from ..machine import facts
from ..methods.causal_lm.names import LMMethod, expand
from ..metrics.causal_lm import measure as evaluate
from ..metrics.causal_lm import verdicts
from ..models.causal_lm.loading import load_causal_lm, tiny_model, weight_dtype
from ..report import causal_lm_page as page
from ..report.causal_lm_table import table
from ..runner.causal_lm import objective_args, optim_settings, train_from_scratch, unlearn_with
from ..storage import write_jsonl
from ..version import __version__
from . import stage_store
from .preflight import select_device

RECORD_FORMAT = "prunelora-lm-record/1"
IMAGE_ONLY = ("momentum", "nesterov", "augment", "flip")  # training settings AdamW on token sequences never uses
PROMPT_CUE = {"question": "Question : Answer :", "answer": "", "paraphrased_answer": "", "perturbed_answer": []}


def dataset_examples(config: LMConfig) -> tuple[str, list[Example], list[Example], list[dict]]:
    """(kind, train, holdout, the embedded benchmark's rows or []) of the configured data, read once."""
    d = config.data
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


def request_ids(config: LMConfig, kind: str, train: list[Example], seed: int) -> tuple[list[str], str]:
    """The forget ids of a seed and how the request was given."""
    d = config.data
    if d.forget:
        return read_request(d.forget, train, kind, d), Path(d.forget).name
    if d.dataset == "people":
        rows = [{"id": ex.id, "person": ex.id.split("-")[0]} for ex in train]
        return forget_people(rows, d.forget_ratio, seed), f"{d.forget_ratio:.0%} of the people, drawn per seed"
    raise UserError("--forget FILE: name what to forget (a file of ids, one a line, or a .jsonl of examples)")


def eval_retain(splits: LMSplits, count: int, seed: int) -> list[Example]:
    if len(splits.retain) <= count:
        return list(splits.retain)
    chosen = np.sort(np.random.default_rng(seed).choice(len(splits.retain), count, replace=False))
    return [splits.retain[i] for i in chosen]


def state_digest(model: nn.Module) -> str:
    """sha256 of a model's state (names and values): the record's proof of which model was unlearned."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()


class LMRun:
    """One command's run of the causal-LM task (see the module docstring)."""

    def __init__(self, command: str, config: LMConfig, overwrite: bool = False, progress: bool = True) -> None:
        self.command, self.config, self.progress = command, config, progress
        self.device = select_device(config.device)
        self.dtype = weight_dtype(config.precision, self.device)
        self.out = Path(config.out)
        self.methods = expand(config.methods)
        for m in self.methods:  # every objective's own values, checked before anything is written
            if m.objective is not None:
                objective_args(config, m)
        self.user = config.model.model
        self.kind, self.train, self.holdout, rows = dataset_examples(config)
        if self.user:
            self.base_model, self.tokenizer = load_causal_lm(self.user, torch.device("cpu"))
        else:
            texts = rows or to_rows(self.train + self.holdout, config.data, self.kind)
            self.tokenizer = word_tokenizer(texts + [PROMPT_CUE])
        for start in range(0, len(self.train + self.holdout), 256):  # every example fits, before anything runs
            encode(self.tokenizer, (self.train + self.holdout)[start:start + 256], config.data.max_length,
                   torch.device("cpu"))
        self.requests = {seed: request_ids(config, self.kind, self.train, seed) for seed in config.seeds}
        self.rows = rows
        self.warnings: list[str] = []  # what a reader must know (a damaged stage run again): results, table, page
        self.before = ""  # the sha256 of the seed's original, once measured
        # what the files hold, not only their names: another dataset or model under the same path is another run,
        # and a cached original or finished stage of the old one is never reused for it
        self.sources = {"data_sha256": request_digest(self.train + self.holdout)}
        if self.user:
            self.sources["model_sha256"] = storage.file_digest(self.user[len("hf:"):])
        run_folder.claim(self.out, f"{command}-causal-lm", {"task": "causal-lm", **config.identity(), **self.sources},
                         overwrite)

    # -- data, models ------------------------------------------------------------------------
    def splits_for(self, seed: int) -> LMSplits:
        ids, request = self.requests[seed]
        return split(self.kind, self.train, ids, self.holdout, request)

    def original(self, seed: int, splits: LMSplits) -> tuple[nn.Module, Any, dict[str, Any]]:
        """(model, tokenizer, meta): the user's model, or the embedded one trained (or reused from cache/)."""
        if self.user:
            return copy.deepcopy(self.base_model).to(self.device, self.dtype), self.tokenizer, {"source": self.user}
        tokenizer = self.tokenizer
        m, d = self.config.model, self.config.data
        data = {k: v for k, v in dataclasses.asdict(d).items() if k not in ("forget", "forget_ratio", "eval_retain")}
        ident = fingerprint("original", data, dataclasses.asdict(m), dataclasses.asdict(self.config.pretrain), seed,
                            self.sources)
        folder = self.out / "cache" / f"original-{ident[:16]}"
        stamp = folder / "prunelora.json"
        if stamp.is_file() and stage_store.intact_folder(f"seed {seed} original", folder, self.warnings):
            import transformers as T

            model = T.AutoModelForCausalLM.from_pretrained(str(folder)).to(self.device, self.dtype)
            return model, tokenizer, json.loads(stamp.read_text())
        model = self.fresh(seed, tokenizer)
        data = encode(tokenizer, splits.train, d.max_length, self.device)
        meta = train_from_scratch(model, data, self.config, seed, f"original seed {seed}", self.progress)
        meta = {"source": f"embedded {m.family}", **meta}
        if meta["memorised"] < self.config.pretrain.memorised:
            raise UserError(f"the embedded original memorised {meta['memorised']:.1%} of the answers after "
                            f"{meta['epochs']} epochs (< {self.config.pretrain.memorised:.0%}): raise "
                            "--set pretrain.epochs=... or pretrain.lr")
        with storage.atomic_dir(folder) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            storage.write_json(tmp / "prunelora.json", meta)
        return model, tokenizer, meta

    def fresh(self, seed: int, tokenizer) -> nn.Module:
        """The initialisation the original started from (the embedded model), or the user's architecture
        initialised with the seed (Retrain of a user's model)."""
        if self.user:
            import transformers as T

            torch.manual_seed(seed)
            return T.AutoModelForCausalLM.from_config(self.base_model.config).to(self.device, self.dtype)
        m = self.config.model
        return tiny_model(m.family, len(tokenizer), seed, tokenizer, hidden=m.hidden, layers=m.layers,
                          heads=m.heads, intermediate=m.intermediate,
                          max_positions=max(64, self.config.data.max_length)).to(self.device, self.dtype)

    # -- methods -----------------------------------------------------------------------------
    def run_method(self, m: LMMethod, original: nn.Module, tokenizer, splits: LMSplits, seed: int):
        """(model to measure, the Operated or None, cost) of one method on this seed's splits."""
        d = self.config.data
        retain = encode(tokenizer, splits.retain, d.max_length, self.device)
        forget = encode(tokenizer, splits.forget, d.max_length, self.device)
        return unlearn_with(m, original, retain, forget, self.config, seed, self.progress,
                            fresh=lambda: self.fresh(seed, tokenizer))

    # -- one stage ---------------------------------------------------------------------------
    def stage(self, m: LMMethod, seed: int, original: nn.Module, tokenizer, splits: LMSplits,
              sets: dict[str, list[Example]], retrain: dict[str, Any] | None) -> dict[str, Any]:
        stage_file = self.out / f"seed{seed}" / "stages" / f"{m.name.replace('@', '_at_')}.json"
        folder = self.out / f"seed{seed}" / "models" / m.name.replace("@", "_at_")
        stage_key = key(self.config, m.name, seed, splits.request, request_digest(splits.forget),
                        self.config.method_args.get(m.name), self.config.method_args.get(m.objective or ""),
                        self.sources)
        kept = stage_store.finished(stage_file, stage_key, f"seed {seed} {m.name}", self.out, self.warnings)
        if kept is not None and isinstance(kept.get("row"), dict) and isinstance(kept.get("measured"), dict):
            return kept
        model, operated, cost = self.run_method(m, original, tokenizer, splits, seed)
        measured = evaluate.measure(model, tokenizer, sets, self.config.data.max_length, self.device)
        row = self.row(m, seed, splits, measured, cost, retrain)
        examples = [{"split": name, **{k: v[i] for k, v in values.items()}}
                    for name, values in measured["per_split"].items() for i in range(len(values["id"]))]
        with ledger.capture() as outputs:
            self.deliver(folder, m, seed, model, operated, tokenizer, splits, row)
            write_jsonl(examples, self.out / f"seed{seed}" / "examples" / f"{m.name.replace('@', '_at_')}.jsonl")
        stage_store.write(stage_file, stage_key, outputs, row=row, measured=measured)
        return {"row": row, "measured": measured}

    def row(self, m: LMMethod, seed: int, splits: LMSplits, measured: dict[str, Any], cost: dict[str, Any],
            retrain: dict[str, Any] | None) -> dict[str, Any]:
        row: dict[str, Any] = {"method": m.name, "label": m.label, "objective": m.objective or "retrain",
                               "surgery": m.surgery, "seed": seed, "request": splits.request,
                               "forget_n": len(splits.forget), "retain_n": len(splits.retain),
                               "holdout_n": len(splits.holdout), **measured["summary"], **cost}
        if retrain is not None and m.objective is not None:
            row.update(evaluate.compare(measured, retrain["measured"]))
            row["verdict"], row["verdict_reasons"] = verdicts.with_retrain(row, retrain["row"])
        elif m.objective is None:
            row["forget_quality"] = 1.0 if "forget_truth_ratio" in row else None
            row["privleak"] = 0.0 if "mia_min_k_auc" in row else None
            row = {k: v for k, v in row.items() if v is not None}
        row["standalone_verdict"], row["standalone_reasons"] = verdicts.without_retrain(
            row, len(splits.forget), len(splits.holdout))
        return row

    def deliver(self, folder: Path, m: LMMethod, seed: int, model: nn.Module, operated, tokenizer,
                splits: LMSplits, row: dict[str, Any]) -> None:
        with storage.atomic_dir(folder) as tmp:
            plain = operated.merged() if operated is not None else model
            plain.save_pretrained(str(tmp / "model"))
            tokenizer.save_pretrained(str(tmp / "model"))
            if operated is not None and operated.adapted:
                operated.model.save_pretrained(str(tmp / "adapter"))
                copy.deepcopy(operated.model).unload().save_pretrained(str(tmp / "adapter" / "base"))
                tokenizer.save_pretrained(str(tmp / "adapter" / "base"))
            weights = {str(p.relative_to(tmp)): storage.file_digest(p) for p in sorted(tmp.rglob("*.safetensors"))}
            storage.write_json(tmp / "record.json", {
                "format": RECORD_FORMAT, "task": "causal-lm", "method": m.name, "seed": seed,
                "request": {"desc": splits.request, "ids": [ex.id for ex in splits.forget],
                            "count": len(splits.forget), "sha256": request_digest(splits.forget)},
                "model_before_sha256": self.before, "weights_sha256": weights,
                "config": dataclasses.asdict(self.config),
                "data": {"train": str(self.train_path().resolve()),
                         "holdout": str(self.holdout_path().resolve()) if self.holdout_path() else None},
                "measures": {k: v for k, v in row.items() if not isinstance(v, (dict, list))},
                "verdict": row.get("verdict"), "standalone_verdict": row["standalone_verdict"],
                "standalone_reasons": row["standalone_reasons"], "thresholds": verdicts.THRESHOLDS,
                "load": "transformers.AutoModelForCausalLM.from_pretrained('model')" + (
                    "; peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('adapter/base'), "
                    "'adapter')" if operated is not None and operated.adapted else ""),
                "versions": {"prunelora": __version__, "torch": torch.__version__}, "machine": facts(self.device)})

    def train_path(self) -> Path:
        """The training data as a file (the embedded benchmark's: written under data/)."""
        return self.out / "data" / "train.jsonl" if self.rows else Path(self.config.data.dataset)

    def holdout_path(self) -> Path | None:
        if self.config.data.holdout:
            return Path(self.config.data.holdout)
        return self.out / "data" / "holdout.jsonl" if self.rows and self.holdout else None

    def deliver_original(self, seed: int, model: nn.Module, tokenizer, meta: dict[str, Any]) -> None:
        folder = self.out / f"seed{seed}" / "models" / "original"
        stamp = folder / "prunelora.json"
        if stamp.is_file() and stage_store.intact_folder(f"seed {seed} original's copy", folder, self.warnings) \
                and json.loads(stamp.read_text()) == meta:
            return
        with storage.atomic_dir(folder) as tmp:
            model.save_pretrained(str(tmp / "model"))
            tokenizer.save_pretrained(str(tmp / "model"))
            storage.write_json(tmp / "prunelora.json", meta)

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        rows, originals = [], []
        if self.rows:  # the embedded benchmark, as files a user can rerun `unlearn --task causal-lm` on
            d = self.config.data
            trained = {e.id for e in self.train}
            write_jsonl([r for r in self.rows if r["id"] in trained], self.out / "data" / "train.jsonl")
            write_jsonl(to_rows(self.holdout, d, self.kind), self.out / "data" / "holdout.jsonl")
        for seed in self.config.seeds:
            splits = self.splits_for(seed)
            original, tokenizer, meta = self.original(seed, splits)
            if not self.user:  # the trained original as a user would hold it: the starting point of `unlearn`
                self.deliver_original(seed, original, tokenizer, meta)
            sets = {"forget": splits.forget, "retain": eval_retain(splits, self.config.data.eval_retain, seed),
                    "holdout": splits.holdout}
            measured = evaluate.measure(original, tokenizer, sets, self.config.data.max_length, self.device)
            self.before = state_digest(original)
            originals.append({"seed": seed, "meta": meta, "sha256": self.before, **measured["summary"]})
            retrain = None
            for m in self.methods:
                result = self.stage(m, seed, original, tokenizer, splits, sets, retrain)
                if m.objective is None:
                    retrain = result
                rows.append(result["row"])
        results = {"task": "causal-lm", "command": self.command, "out": str(self.out), "rows": rows,
                   "originals": originals, "config": dataclasses.asdict(self.config),
                   "method_settings": {m.name: self.method_settings(m) for m in self.methods},
                   "thresholds": verdicts.THRESHOLDS, "machine": facts(self.device), "warnings": self.warnings}
        storage.write_json(self.out / "results.json", results)
        storage.write_text(self.out / "results.md", table(results) + "\n")
        storage.write_text(self.out / "config.yaml", yaml.safe_dump(dataclasses.asdict(self.config), sort_keys=False))
        page.write(results, self.out)
        return results

    def method_settings(self, m: LMMethod) -> dict[str, Any]:
        if m.objective is None:
            return {"recipe": dataclasses.asdict(self.config.pretrain), "from": "the original's initialisation"}
        args = objective_args(self.config, m)
        optim = {k: v for k, v in dataclasses.asdict(optim_settings(self.config, m)).items() if k not in IMAGE_ONLY}
        own = {k: v for k, v in (dataclasses.asdict(args) if args else {}).items()
               if k not in IMAGE_ONLY and v is not None}
        return {"objective": m.objective, "surgery": m.surgery, **optim, "epochs": self.config.unlearn.epochs,
                "own": own, "surgery_settings": dataclasses.asdict(self.config.unlearn)}
