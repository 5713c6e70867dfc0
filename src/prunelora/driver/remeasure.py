"""`prunelora verify`'s second look: a record's model measured again through its task, from the record alone.

Each task has one function returning a Remeasured: the request as the data holds it now (every field of the
record's `request`, re-derived), what the request files still on disk name, the figures measured again, and the
task's verdict rule (figures -> verdict and reasons), which verify.py applies to the figures measured again and to
the record's own. verify.py compares them with the record.

Nothing a record names is imported or called: the model is rebuilt from the registry (prunelora checkpoints),
by transformers from safetensors only with no remote code (hf folders), or from the factory the user names on
verify's command line (py: models; `factory_model`), never from the record's `source`. The request files the
record's configuration names are not needed: the samples are the ids inside the record (earlier requests of a
sequence: its chain's records), and a request file still at its path is only read to check that it names them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import storage
from ..api import as_classifier
from ..config import RunConfig
from ..config.causal_lm import LMConfig
from ..config.parsing import build
from ..data import to_float
from ..data.ids import IdIndex, named_samples
from ..data.text.examples import forget_request, read_examples, request_digest, split
from ..data.text.synthetic import forget_people
from ..data.text.tokens import format_name
from ..errors import UserError, path_kind, shown
from ..machine import select_device
from ..metrics.causal_lm import measure as measures
from ..metrics.causal_lm import verdicts
from ..metrics.causal_lm.robustness import robustness_settings
from ..metrics.standalone import standalone_verdict, thresholds
from ..models.causal_lm.loading import load_causal_lm, quiet_transformers
from ..models.outputs import unwrap
from ..models.user_models import PICKLED, load_hf
from ..registry import CAUSAL_LM
from .causal_lm import dataset_examples
from .evaluation import measure
from .image_task import ImageTask
from .record import request_of
from .stages import Experiment


@dataclass
class Remeasured:
    """What a task finds again from a record's model and data (see the module docstring)."""

    request: dict[str, Any]  # every field of the record's `request`, as the data holds it now
    figures: dict[str, Any]  # the evidence measured again
    rule: Callable[[dict[str, Any]], tuple[str, list[str]]]  # figures -> the verdict without Retrain, its reasons
    request_files: list[tuple[bool, str]] = field(default_factory=list)  # (names the record's ids?, what is said)
    facts: dict[str, Any] = field(default_factory=dict)  # a task's own top-level fields, re-derived (prompt_format)


def thresholds_of(task: str) -> Any:
    """The thresholds a record of `task` states beside its verdict (the code's, not the record's)."""
    return dict(verdicts.THRESHOLDS) if task == CAUSAL_LM else thresholds()


# -- the image task ----------------------------------------------------------------------------------------------
def verdict_half(splits, search: dict[str, Any] | None):
    """A search's winner was measured on the verdict half of the test images (its record's search.verdict_ids,
    "test_retain:<i>" / "test_forget:<i>"): the same half, for measuring it again; the splits as they are else."""
    if not search:
        return splits
    chosen: dict[str, list[int]] = {"test_retain": [], "test_forget": []}
    for ident in search["verdict_ids"]:
        name, _, position = str(ident).partition(":")
        if name not in chosen or not position.isdigit():
            raise UserError(f"search.verdict_ids: '{shown(str(ident))}' is no test sample of this record's run")
        chosen[name].append(int(position))
    return dataclasses.replace(splits, **{name: getattr(splits, name).subset(torch.as_tensor(sorted(index),
                                                                                            dtype=torch.long))
                                          for name, index in chosen.items()})


def image(record: dict[str, Any], delivered: Path, dataset: str | None, data_root: str | None,
          earlier_ids: dict[int, list[str]], factory: Any = None) -> Remeasured:
    """The record's request, figures and verdict found again on the image task, from what the record says.

    earlier_ids: the ids of the sequence's earlier requests (from its chain), for the request files that are gone.
    factory: the user's py: factory (factory_model's arguments), for a py: model."""
    config = run_config(record, dataset, data_root)
    seed, request = record["seed"], record["request"]["request"]
    ids_of = {**earlier_ids, request: record["request"]["ids"]}
    with _request_files(config, ids_of) as (given, checks):
        device = select_device("auto")
        exp = Experiment(config, device, ImageTask, progress=False, registry_models=False, unlearns=False)
        files = [_check_request_file(exp.raw, path, ids_of.get(i + 1)) for i, path in enumerate(given)]
        splits = verdict_half(exp.splits(seed, request), record.get("search"))
        loaded = load_delivered(record, delivered, factory).to(device)
        example = to_float(splits.retain_train.images[:2]).to(device)
        after = record["model_after"]
        evaluated = loaded if after["kind"] == "prunelora" else as_classifier(
            unwrap(loaded), example, after.get("mean"), after.get("std"))[0]
        measured = measure(evaluated, splits, seed, config, None, None, {}, exp.sequential)
        now = request_of(splits, request)
    return Remeasured(now, measured, standalone_verdict, checks + [f for f in files if f])


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


@contextlib.contextmanager
def _request_files(config: RunConfig, ids_of: dict[int, list[str] | None]
                   ) -> Iterator[tuple[list[str], list[tuple[bool, str]]]]:
    """config.data.forget pointed at files holding the ids the record (and its chain) names, under the original
    files' names; yields the original paths and what is said of the ones that cannot be checked. A request
    after the record's (a sequence's later files, which shape the training subset) is read where it is."""
    given = list(config.data.forget or [])
    if not given:
        yield given, []
        return
    checks: list[tuple[bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="prunelora-verify-") as tmp:
        replaced = []
        for i, path in enumerate(given):
            ids = ids_of.get(i + 1)
            if ids is None:
                if path_kind(path) != "file":
                    raise UserError(f"request file {shown(path)} (request {i + 1} of the sequence) is not there and "
                                    "no record of this chain names its ids: give the file back at that path")
                replaced.append(path)
                continue
            folder = Path(tmp) / str(i)
            folder.mkdir()
            substitute = folder / (Path(path).name or "request.txt")
            if substitute.suffix.lower() == ".csv":
                substitute = substitute.with_suffix(".txt")
            substitute.write_text("".join(f"{sample}\n" for sample in ids))
            replaced.append(str(substitute))
            if path_kind(path) != "file":
                checks.append((True, f"request file {shown(path)} is not there (or not a file): the ids inside the "
                                     "record are used"))
        config.data.forget = replaced
        try:
            yield given, checks
        finally:
            config.data.forget = given


def _check_request_file(raw, path: str, ids: list[str] | None) -> tuple[bool, str] | None:
    """(whether the request file at `path` names exactly the record's samples, what is said), None when there is
    nothing to compare (the file is gone, or the record does not hold that request's ids)."""
    if ids is None or path_kind(path) != "file":
        return None
    try:
        named = named_samples(IdIndex(raw), path)
    except UserError as exc:
        return False, f"request file {shown(path)} no longer reads: {exc}"
    now = {raw.train_ids[p] for p in named.positions}
    same = now == set(ids)
    return same, (f"request file {shown(path)} names the record's {len(ids)} samples" if same else
                  f"request file {shown(path)} now names {len(now ^ set(ids))} sample(s) the record does not "
                  f"(it names {len(now)}, the record {len(ids)}): the record's ids were used")


# -- the causal-LM task ------------------------------------------------------------------------------------------
def causal_lm(record: dict[str, Any], delivered: Path, dataset: str | None, data_root: str | None,
              earlier_ids: dict[int, list[str]], factory: Any = None) -> Remeasured:
    """Every figure measured again on the forget set (the record's ids), the seeded retain draw and the holdout;
    the request re-derived (a forget_ratio's draw drawn again; a request file still there read to check it)."""
    quiet_transformers()
    try:
        config = build(LMConfig, json.loads(json.dumps(record["config"])))
    except (TypeError, KeyError) as exc:
        raise UserError(f"the record's configuration cannot be read by this prunelora ({exc})") from None
    d, seed = config.data, record["seed"]
    kind, train, holdout = _lm_data(record, config, dataset)
    by_id = {ex.id: ex for ex in train}
    ids = [i for i in record["request"]["ids"] or [] if i in by_id]
    checks: list[tuple[bool, str]] = []
    if d.forget:
        desc = Path(d.forget).name
        if path_kind(d.forget) == "file":
            named = forget_request(d.forget, train, kind, d)[0]
            same = set(named) == set(record["request"]["ids"] or [])
            checks.append((same, f"request file {shown(d.forget)} " + ("names the record's ids" if same else
                                                                       "now names other ids than the record's")))
        else:
            checks.append((True, f"request file {shown(d.forget)} is not there: the ids inside the record are used"))
    elif d.dataset == "people":
        desc = f"{d.forget_ratio:.0%} of the people, drawn per seed"
        rows = [{"id": ex.id, "person": ex.id.split("-")[0]} for ex in train]
        ids = forget_people(rows, d.forget_ratio, seed)  # the draw, drawn again
    else:
        raise UserError("the record's configuration names no request (--forget FILE): it is no record of a run")
    if record.get("search"):  # a search's winner: its verdict was measured on the holdout's verdict half
        wanted = set(record["search"]["verdict_ids"])
        holdout = [ex for ex in holdout if ex.id in wanted]
    splits = split(kind, train, ids, holdout, desc)
    digest = request_digest(splits.forget)
    now = {"scenario": "named", "request": 1, "classes": None, "desc": desc, "ids": [ex.id for ex in splits.forget],
           "samples": len(splits.forget), "forget_sha256": digest, "all_forgotten_sha256": digest}
    device = select_device("auto")
    _safetensors_only(delivered / "model")
    model, tokenizer = load_causal_lm(f"hf:{delivered / 'model'}", device)
    sets = {"forget": splits.forget, "retain": measures.retain_sample(splits.retain, d.eval_retain, seed),
            "holdout": holdout}
    formats, attack = robustness_settings(config.evidence, tokenizer, d.prompt_template, seed)
    summary = measures.measure(model, tokenizer, sets, d.max_length, device, d.max_new_tokens, d.prompt_template,
                               formats, attack)["summary"]
    sizes, original = (len(splits.forget), len(holdout)), record.get("original_evidence")
    return Remeasured(now, dict(summary), lambda figures: verdicts.without_retrain(figures, *sizes, original), checks,
                      {"prompt_format": format_name(tokenizer, d.prompt_template)})


def _lm_data(record: dict[str, Any], config: LMConfig, dataset: str | None) -> tuple[str, list, list]:
    """(kind, train, holdout): --dataset, else the record's data files, else the embedded benchmark generated
    again from the configuration (it is made in code: nothing of the run's folder is needed)."""
    d, files = config.data, record["data"]
    train_path = dataset or files["train"]
    if path_kind(train_path) == "file":
        kind, train = read_examples(train_path, d)
        holdout_path = files["holdout"] or d.holdout
        if holdout_path and path_kind(holdout_path) == "file":
            return kind, train, read_examples(holdout_path, d, kind)[1]
        if holdout_path and d.dataset == "people":
            return kind, train, dataset_examples(config)[2]
        if holdout_path:
            raise UserError(f"the holdout {shown(holdout_path)} is not there: give the file back at that path")
        return kind, train, []
    if dataset is None and d.dataset == "people":
        kind, train, holdout, _ = dataset_examples(config)
        return kind, train, holdout
    raise UserError(f"the training data {shown(train_path)} is not there: give it with --dataset FILE")


def _safetensors_only(folder: Path) -> None:
    """verify loads weights from safetensors only: a pickle (which torch.load would run) is refused unread."""
    pickled = sorted(p.name for p in folder.rglob("*") if p.suffix in PICKLED) if folder.is_dir() else []
    if pickled:
        raise UserError(f"{shown(folder / pickled[0])} is a pickle: verify loads safetensors weights only")


# -- models ------------------------------------------------------------------------------------------------------
def load_delivered(record: dict[str, Any], path: Path, factory: Any = None) -> nn.Module:
    """The delivered model at `path`, loaded the way its kind is loaded (model_after.kind); a py: model only with
    the user's own factory (factory_model's arguments), never with the code the record names."""
    kind = record["model_after"]["kind"]
    if kind == "prunelora":
        return storage.load_model(path)[0]
    if kind == "hf":
        _safetensors_only(path / "model")
        return load_hf(str(path / "model"), progress=False).model
    if kind == "py":
        if factory is None:
            raise UserError("the delivered model is a py: model, built by code: verify never runs code a record "
                            "names; give your own factory with --model-factory py:module:factory (and, for a "
                            "module of your own, --factory-path FOLDER)")
        return factory_model(*factory, path / "model.safetensors")
    raise UserError(f"the record names a model of unknown kind {shown(kind)}")


@contextlib.contextmanager
def import_paths(allowed: tuple[str, ...] = (), hidden: tuple[str | Path, ...] = ()) -> Iterator[None]:
    """sys.path without the working directory ('' and its path, which `python -m` and `python -c` put first) and
    the `hidden` folders (a record's folder), with the `allowed` folders first; restored afterwards."""
    saved = list(sys.path)
    unwanted = {os.path.realpath(os.getcwd()), *(os.path.realpath(h) for h in hidden)}
    sys.path[:] = [*map(str, allowed), *(p for p in saved if p and os.path.realpath(p) not in unwanted)]
    try:
        yield
    finally:
        sys.path[:] = saved


def factory_model(spec: str, paths: tuple[str, ...], hidden: tuple[str | Path, ...], weights: Path) -> nn.Module:
    """The model `py:module:factory` builds, with the safetensors `weights`, the module imported from the
    installed packages and the `paths` the user named (never the working directory or the record's folder)."""
    target = spec.removeprefix("py:")
    module_name, _, factory_name = target.partition(":")
    if not spec.startswith("py:") or not module_name or not factory_name:
        raise UserError(f"--model-factory needs py:package.module:factory, got {shown(spec)}")
    with import_paths(paths, hidden):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UserError(f"--model-factory: cannot import {shown(module_name)} ({exc}); the working directory "
                            "and the record's folder are not searched: give its folder with --factory-path") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserError(f"--model-factory: {shown(module_name)} has no callable {shown(factory_name)}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise UserError(f"--model-factory: {shown(target)}() returned a {type(model).__name__}, not a torch nn.Module")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise UserError(f"--model-factory: the weights {shown(weights)} do not fit {shown(target)}() "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return model


def same_figures(measured: Any, recorded: Any, tolerance: float) -> bool:
    """Whether a figure measured again agrees with the record's: numbers within `tolerance`, flags and words
    equal, a figure the data could not give (NaN, None) only where the record has none either."""
    from ..metrics.finite import finite

    if isinstance(measured, bool) or isinstance(recorded, bool):
        return type(measured) is type(recorded) and measured == recorded
    if not finite(measured) or not finite(recorded):
        return not finite(measured) and not finite(recorded) and not isinstance(recorded, str) \
            and not isinstance(measured, str)
    return abs(float(measured) - float(recorded)) <= tolerance


__all__ = ["Remeasured", "causal_lm", "factory_model", "image", "import_paths", "load_delivered",
           "same_figures", "thresholds_of"]
