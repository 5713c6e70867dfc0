"""`prunelora verify`'s second look: a record's model measured again through its task, from the record alone.

Each task has one function: (the request as the data holds it now, the figures measured again, the verdict
they give). verify.py compares them with the record.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import storage
from ..api import as_classifier
from ..config import RunConfig
from ..config.causal_lm import LMDataConfig
from ..config.parsing import build
from ..data import to_float
from ..data.text.examples import read_examples, request_digest, split
from ..errors import UserError
from ..machine import select_device
from ..metrics.causal_lm import measure as measures
from ..metrics.causal_lm import verdicts
from ..metrics.evaluate import collect_logits, metrics_from_logits
from ..metrics.standalone import standalone_verdict
from ..models.causal_lm.loading import load_causal_lm, quiet_transformers
from ..models.outputs import unwrap
from ..models.user_models import load_factory, load_hf
from .image_task import ImageTask
from .record import request_of
from .stages import Experiment


def image(record: dict[str, Any], delivered: Path, dataset: str | None,
              data_root: str | None) -> tuple[dict[str, Any], dict[str, Any], tuple[str, list[str]]]:
    """For `prunelora verify`: (the request as the data holds it now, the figures measured again from the
    delivered model's outputs, the verdict they give), from what the record says."""

    config = run_config(record, dataset, data_root)
    device = select_device("auto")
    exp = Experiment(config, device, ImageTask, progress=False, registry_models=False, unlearns=False)
    seed, request = int(record["seed"]), int(record["request"]["request"])
    splits = exp.splits(seed, request)
    loaded = load_delivered(record, delivered).to(device)
    example = to_float(splits.retain_train.images[:2]).to(device)
    after = record["model_after"]
    evaluated = loaded if after.get("kind") == "prunelora" else as_classifier(
        unwrap(loaded), example, after.get("mean"), after.get("std"))[0]
    with torch.inference_mode():
        logits, labels = collect_logits(evaluated, splits, config.eval_batch_size)
    measured = metrics_from_logits(logits, labels, seed, config.mia_max_per_side, config.evidence)
    return request_of(splits, request), measured, standalone_verdict({**record["evidence"], **measured})


def causal_lm(record: dict[str, Any], delivered: Path, dataset: str | None,
              data_root: str | None) -> tuple[dict[str, Any], dict[str, Any], tuple[str, list[str]]]:
    """For `prunelora verify`: (the request as the data holds it now, every figure measured again on the
    forget set, the seeded retain draw and the holdout, the verdict they give), from what the record says."""

    quiet_transformers()
    try:
        cfg = build(LMDataConfig, dict(record["config"]["data"]), "data")
    except (TypeError, KeyError) as exc:
        raise UserError(f"the record's configuration cannot be read by this prunelora ({exc})") from None
    files = record.get("data") or {}
    train_path = Path(dataset) if dataset else Path(files["train"])
    kind, train = read_examples(train_path, cfg)
    holdout = read_examples(files["holdout"], cfg, kind)[1] if files.get("holdout") else []
    by_id = {ex.id: ex for ex in train}
    ids = [str(i) for i in record["request"]["ids"]]
    known = [i for i in ids if i in by_id]
    now = {"ids": known, "samples": len(known), "forget_sha256": request_digest([by_id[i] for i in known])}
    splits = split(kind, train, known, holdout, record["request"].get("desc", ""))
    seed = int(record["seed"])
    sets = {"forget": splits.forget, "retain": measures.retain_sample(splits.retain, cfg.eval_retain, seed),
            "holdout": holdout}
    device = select_device("auto")
    model, tokenizer = load_causal_lm(f"hf:{delivered / 'model'}", device)
    summary = measures.measure(model, tokenizer, sets, cfg.max_length, device)["summary"]
    return now, summary, verdicts.without_retrain(summary, len(splits.forget), len(holdout))


def run_config(record: dict[str, Any], dataset: str | None, data_root: str | None) -> RunConfig:
    """The run's configuration as recorded, pointed at the data given on the command line."""
    saved = json.loads(json.dumps(record["config"]))
    if dataset is not None:
        saved["data"]["dataset"] = dataset
    if data_root is not None:
        saved["data"]["data_root"] = data_root
    saved["data"]["download"] = False  # verify reads what is there; it never fetches
    saved["out"] = None
    saved["device"] = "auto"
    try:
        return build(RunConfig, saved)
    except (TypeError, KeyError) as exc:
        raise UserError(f"the record's configuration cannot be read by this prunelora ({exc})") from None


def load_delivered(record: dict[str, Any], path: Path) -> nn.Module:
    """The delivered model at `path`, loaded the way its kind is loaded (model_after.kind)."""
    kind = record["model_after"].get("kind")
    if kind == "prunelora":
        return storage.load_model(path)[0]
    if kind == "hf":
        return load_hf(str(path / "model"), progress=False).model
    if kind == "py":
        return load_factory(record["model_after"]["source"], str(path / "model.safetensors")).model
    raise UserError(f"the record names a model of unknown kind {kind!r}")
