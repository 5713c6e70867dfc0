"""A record per delivered model: what was asked, what was done, what it showed, and hashes that prove it.

An auditor who receives a model later must be able to check that it is the model that was tested,
on the data the request named. So beside every delivered model the driver writes a record
(`record.json` in a delivered folder, `<model>.record.json` beside a delivered file) holding the
request (its ids or classes and a content hash of the forgotten samples' bytes), the model before
(a hash of its weights) and after (the sha256 of every file of the delivered model), the method and the
fully resolved configuration, versions and machine, the evidence with its Retrain-free verdict, the cost,
and in a sequence the hash of the previous request's record (a chain). Its `digest` is the sha256 of the
canonical JSON of everything else (canonical()), and with a signing key its `signature` is an Ed25519
signature of the same bytes with the digest (signing.py). SCHEMA says, field by field, what a record holds
and how `prunelora verify` (verify.py) checks it: re-derived from the model, the data and the code, or covered
by the digest only. docs/records.md is the reader's version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import signing, storage
from ..config import RunConfig, to_dict
from ..config.parsing import build
from ..data import ImageSet, Splits
from ..errors import UserError, shown
from ..ledger import file_hash
from ..machine import facts
from ..registry import CAUSAL_LM, IMAGE

FORMAT = "prunelora-record/2"
EARLIER_FORMATS = ("prunelora-record/1", "prunelora-lm-record/1")  # not read: rerun to write a /2 one
HASH_BATCH = 1024


def record_path(deliverable: Path) -> Path:
    """record.json inside a delivered folder, <stem>.record.json beside a delivered file."""
    folder = deliverable.is_dir() if deliverable.exists() else deliverable.suffix == ""
    return deliverable / "record.json" if folder else deliverable.with_suffix(".record.json")


def weight_files(deliverable: Path) -> list[Path]:
    """Every file of a deliverable: the file itself, or every file below a delivered folder but its record
    (model/, adapter/, prunelora.json, ...: a generation_config.json changes what the model says as much as a
    weight does). Links are listed as themselves, never followed into another folder."""
    if not deliverable.is_dir():
        return [deliverable] if deliverable.is_file() else []
    found = []
    for top, dirs, files in os.walk(deliverable, followlinks=False):
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(top, d))]):
            path = Path(top) / name
            if path != deliverable / "record.json":
                found.append(path)
    return sorted(found)


def weight_hashes(deliverable: Path) -> dict[str, str]:
    """sha256 of every file of a deliverable: a delivered folder's by their paths inside it, a delivered file's
    under its own name (verify compares a file by its content alone: a copy under another name is the same
    model). A link to a folder, or a broken one, is 'link': no hash a record holds (the driver writes none)."""
    base = deliverable.parent if deliverable.is_file() else deliverable
    return {f.relative_to(base).as_posix(): (file_hash(f) if f.is_file() else "link")
            for f in weight_files(deliverable)}


def weights_digest(model: nn.Module) -> str:
    """sha256 over a model's state (names, dtypes, shapes, bytes, in name order): the model before unlearning."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def data_digest(data: ImageSet) -> str:
    """sha256 over a set's image bytes and labels, in order (streamed sets are read a batch at a time)."""
    digest = hashlib.sha256()
    labels = data.labels.cpu().numpy().astype(np.int64)
    for start in range(0, len(data), HASH_BATCH):
        batch = data.images[start:start + HASH_BATCH]
        batch = batch.detach().cpu().contiguous() if isinstance(batch, torch.Tensor) else torch.as_tensor(batch)
        digest.update(f"{batch.dtype}|{tuple(batch.shape[1:])}|".encode())
        digest.update(batch.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(labels.tobytes())
    return digest.hexdigest()


def request_of(splits: Splits, request: int) -> dict[str, Any]:
    """What the request forgot: its ids (named samples) or classes, how many samples, and their content hash."""
    forget = splits.new_forget
    ids = getattr(splits, "request_ids", None)
    named = list(ids[request - 1]) if ids and len(ids) >= request else getattr(splits, "forget_ids", None)
    return {"scenario": splits.scenario, "request": request, "classes": list(splits.forget_classes) or None,
            "ids": list(named) if named is not None else None, "samples": len(forget),
            "forget_sha256": data_digest(forget), "all_forgotten_sha256": data_digest(splits.forget_train)}


def evidence_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """The row's measured figures (finite numbers, flags and words; a NaN is written as None)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
    return out


def portable_paths(saved: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A configuration (as a dict) with the data section's path fields made absolute where they name something
    that exists (verify runs from anywhere); a list of paths is made absolute path by path."""
    data = saved["data"]
    for name in fields:
        value = data.get(name)
        if isinstance(value, list):
            data[name] = [str(Path(p).expanduser().resolve()) for p in value]
        elif isinstance(value, str) and value and Path(value).expanduser().exists():
            data[name] = str(Path(value).expanduser().resolve())
    return saved


def portable_config(config: RunConfig) -> dict[str, Any]:
    """The resolved image configuration, with the data's and the request files' paths made absolute."""
    saved = to_dict(config)
    if saved["data"].get("data_root"):
        saved["data"]["data_root"] = str(Path(saved["data"]["data_root"]).expanduser().resolve())
    return portable_paths(saved, ("dataset", "forget"))


def stage_facts(config: RunConfig, device: torch.device, splits: Splits, request: int,
                start: nn.Module) -> dict[str, Any]:
    """What every budget's record of one stage shares (the request with its data hashes, the model before, the
    configuration, the machine): computed once per stage, not per budget."""
    return {"request": request_of(splits, request), "model_before": {"weights_sha256": weights_digest(start)},
            "config": portable_config(config), "environment": facts(device)}


def write_record(deliverable: Path, shared: dict[str, Any], *, task: str, model: str, loader: dict[str, Any],
                 method: str, epochs: int | None, seed: int, metrics: dict[str, Any], cost: dict[str, Any],
                 previous: Path | None, verdict: tuple[str, list[str], dict[str, Any]],
                 sign_key: Path | None = None) -> Path:
    """Write the deliverable's record (atomically) beside it and return its path. shared: the task's
    record_facts; verdict: the task's verdict without Retrain, its reasons and thresholds; sign_key: an Ed25519
    private key (PEM) that signs the record (signing.py); None: the running command's --sign-key, if any."""
    path = record_path(deliverable)
    verdict, reasons, limits = verdict
    record = {
        "format": FORMAT, "task": task, "model": model, "method": method, "epochs": epochs, "seed": seed,
        "request": shared["request"], "model_before": shared["model_before"],
        "model_after": {"path": os.path.relpath(deliverable, path.parent), **loader,
                        "weight_files": weight_hashes(deliverable)},
        "config": shared["config"], "environment": shared["environment"],
        "evidence": evidence_of(metrics),
        "verdict": {"standalone": verdict, "reasons": reasons, "thresholds": limits},
        "cost": cost,
        "previous_record": ({"path": os.path.relpath(previous, path.parent), "sha256": file_hash(previous)}
                            if previous is not None and previous.is_file() else None),
    }
    record.update({k: v for k, v in shared.items() if k not in record})  # a task's own facts (its data files)
    record = sealed(storage.json_ready(record), sign_key if sign_key is not None else signing.active_key())
    storage.write_json(path, record)
    return path


# -- the digest and the signature ----------------------------------------------------------------------------
def canonical(record: dict[str, Any], digest: bool = False) -> bytes:
    """The bytes a digest (digest=False) or a signature (digest=True) is computed over: the record without its
    `digest` (kept for a signature, which signs it too) and without its signature's `value`, as JSON with sorted
    keys, no whitespace, ASCII only (other characters as \\uXXXX), no NaN: Python's json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=True, allow_nan=False). The signature's other fields (its algorithm and
    public key) are covered: a signature stripped from a record changes its digest."""
    kept = {k: v for k, v in record.items() if digest or k != "digest"}
    if isinstance(kept.get("signature"), dict):
        kept["signature"] = {k: v for k, v in kept["signature"].items() if k != "value"}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def digest_of(record: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of every field but `digest` and the signature's value."""
    return hashlib.sha256(canonical(record)).hexdigest()


def signed_bytes(record: dict[str, Any]) -> bytes:
    """What a signature signs: the canonical JSON of every field but the signature's value (the digest included)."""
    return canonical(record, digest=True)


def sealed(record: dict[str, Any], sign_key: Path | None = None) -> dict[str, Any]:
    """`record` with its digest, and signed with the private key at `sign_key` (None: unsigned)."""
    record = {k: v for k, v in record.items() if k not in ("digest", "signature")}
    key = signing.load_private_key(sign_key) if sign_key is not None else None
    if key is not None:
        record["signature"] = signing.describe(key)
    record["digest"] = digest_of(record)
    if key is not None:
        record["signature"]["value"] = signing.sign(signed_bytes(record), key)
    return record


# -- the schema ----------------------------------------------------------------------------------------------
DERIVED = "re-derived"  # verify computes it again (from the model, the data, the code or the config) and compares
DIGESTED = "digested"  # covered by the digest (and the signature) only: verify cannot compute it again
NOT_RERUN = ("relearn_",)  # figures that need the model the run started from (relearn time): digested only


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Kind:
    """A leaf's type: what a message calls it, and its test."""

    name: str
    test: Callable[[Any], bool]


STR = Kind("a string", lambda v: isinstance(v, str))
INT = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
COUNT = Kind("a whole number >= 0", lambda v: INT.test(v) and v >= 0)
POSITIVE = Kind("a whole number >= 1", lambda v: INT.test(v) and v >= 1)
NUMBER = Kind("a finite number", _finite)
SHA256 = Kind("a sha256 (64 lowercase hex digits)", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v)
              is not None)
FIGURE = Kind("a finite number, true, false or null", lambda v: v is None or isinstance(v, bool) or _finite(v))
FACT = Kind("a string, a number, true, false or null", lambda v: v is None or isinstance(v, (str, bool)) or _finite(v))
PLACE = Kind("'.' or a file name (no folder)", lambda v: isinstance(v, str) and v != "" and "/" not in v and "\\" not in v
             and v not in ("..",) and "\0" not in v)


def nullable(kind: Kind) -> Kind:
    return Kind(f"{kind.name} or null", lambda v: v is None or kind.test(v))


def list_of(kind: Kind) -> Kind:
    return Kind(f"a list, each {kind.name}", lambda v: isinstance(v, list) and all(kind.test(x) for x in v))


@dataclass(frozen=True)
class Field:
    """One field of a record: its type (a Kind, a Section, a MapOf, a Section or null, or the configuration), how
    verify checks it, and whether it may be absent (the signature)."""

    kind: Any
    how: str
    optional: bool = False


@dataclass(frozen=True)
class Section:
    """A JSON object with exactly these fields (none missing but the optional ones, none unknown)."""

    fields: dict[str, Field]
    null: bool = False  # the section may be null instead


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose keys are free (names of figures, of files, of facts) and whose values are of `kind`."""

    kind: Kind
    key: Kind = STR


CONFIG = "config"  # the configuration: checked by building the task's configuration from it (config_problem)
PREVIOUS = Kind("a relative path to a record.json", lambda v: isinstance(v, str) and v.endswith("record.json")
                and not os.path.isabs(v) and "\0" not in v)

LOADERS: dict[str, dict[str, Field]] = {  # model_after's fields by model_after.kind (the subjects' loader())
    "prunelora": {},
    "hf": {"source": Field(STR, DIGESTED), "mean": Field(nullable(list_of(NUMBER)), DIGESTED),
           "std": Field(nullable(list_of(NUMBER)), DIGESTED)},
    "py": {"source": Field(STR, DIGESTED), "mean": Field(nullable(list_of(NUMBER)), DIGESTED),
           "std": Field(nullable(list_of(NUMBER)), DIGESTED)},
    "hf-causal-lm": {"load": Field(STR, DIGESTED)},
}
SIGNATURE = Section({"algorithm": Field(STR, DERIVED), "public_key": Field(STR, DERIVED),
                     "fingerprint": Field(SHA256, DERIVED), "value": Field(STR, DERIVED)})


def schema(task: str, loader: str) -> Section:
    """Every field of a `task` record whose model_after.kind is `loader`, and how verify checks each."""
    request = {"scenario": Field(STR, DERIVED), "request": Field(POSITIVE, DERIVED),
               "classes": Field(nullable(list_of(INT)), DERIVED), "ids": Field(nullable(list_of(STR)), DERIVED),
               "samples": Field(COUNT, DERIVED), "forget_sha256": Field(SHA256, DERIVED),
               "all_forgotten_sha256": Field(SHA256, DERIVED)}
    if task == CAUSAL_LM:
        request["desc"] = Field(STR, DERIVED)
    fields = {
        "format": Field(STR, DERIVED), "task": Field(STR, DERIVED), "model": Field(STR, DERIVED),
        "method": Field(STR, DERIVED), "epochs": Field(nullable(POSITIVE), DERIVED), "seed": Field(INT, DERIVED),
        "request": Field(Section(request), DERIVED),
        "model_before": Field(Section({"weights_sha256": Field(SHA256, DIGESTED)}), DIGESTED),
        "model_after": Field(Section({"path": Field(PLACE, DIGESTED), "kind": Field(STR, DERIVED),
                                      **LOADERS.get(loader, {}),
                                      "weight_files": Field(MapOf(SHA256), DERIVED)}), DERIVED),
        "config": Field(CONFIG, DIGESTED),
        "environment": Field(MapOf(FACT), DIGESTED),
        "evidence": Field(MapOf(FIGURE), DERIVED),
        "verdict": Field(Section({"standalone": Field(STR, DERIVED), "reasons": Field(list_of(STR), DERIVED),
                                  "thresholds": Field(Kind("a string or an object of facts", _thresholds), DERIVED)}),
                         DERIVED),
        "cost": Field(Section({"sec_per_epoch": Field(nullable(NUMBER), DIGESTED),
                               "total_sec": Field(nullable(NUMBER), DIGESTED),
                               "peak_memory_mb": Field(nullable(NUMBER), DIGESTED),
                               "trainable_params": Field(nullable(COUNT), DIGESTED)}), DIGESTED),
        "previous_record": Field(Section({"path": Field(PREVIOUS, DERIVED), "sha256": Field(SHA256, DERIVED)}, null=True),
                                 DERIVED),
    }
    if task == CAUSAL_LM:
        fields["prompt_format"] = Field(STR, DERIVED)  # how prompts are written: the template, or the tokenizer's
        # the original's figures its verdict reads (model utility, P(answer)): no model here to measure them again
        fields["original_evidence"] = Field(MapOf(FIGURE), DIGESTED, optional=True)
        fields["data"] = Field(Section({"train": Field(STR, DIGESTED), "holdout": Field(nullable(STR), DIGESTED)}),
                               DIGESTED)  # where the data was: its content is what the request's hashes re-derive
    # a search's winner (search/): how many trials, what they spent, which samples chose and which judged; the
    # verdict half's ids are re-derived (verify measures the model on them again), the rest digested
    fields["search"] = Field(Kind("a search's block (an object with selection_ids and verdict_ids)", _search_block),
                             DIGESTED, optional=True)
    fields["digest"] = Field(SHA256, DERIVED)
    fields["signature"] = Field(SIGNATURE, DERIVED, optional=True)
    return Section(fields)


def _search_block(value: Any) -> bool:
    ids = ("selection_ids", "verdict_ids")
    return isinstance(value, dict) and all(isinstance(value.get(k), list) and all(isinstance(i, str) for i in value[k])
                                           for k in ids) and not set(value["selection_ids"]) & set(value["verdict_ids"])


def _thresholds(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and all(FACT.test(v) for v in value.values()))


def malformed(record: Any) -> str | None:
    """The first thing that makes `record` no record of this format (a field missing, unknown, or of the wrong
    type, the configuration included), as '<field>: <what is wrong>'; None when it has this schema."""
    if not isinstance(record, dict):
        return f"the record must be a JSON object, got {_brief(record)}"
    for name in ("task", "model_after"):  # what the rest of the schema depends on
        if name not in record:
            return f"{name}: missing"
    if record["task"] not in (IMAGE, CAUSAL_LM):
        return f"task: must be {IMAGE!r} or {CAUSAL_LM!r}, got {_brief(record['task'])}"
    after = record["model_after"]
    if not isinstance(after, dict):
        return f"model_after: must be an object, got {_brief(after)}"
    if after.get("kind") not in LOADERS:
        return f"model_after.kind: must be one of {', '.join(map(repr, LOADERS))}, got {_brief(after.get('kind'))}"
    return _problem(record, schema(record["task"], after["kind"]), "", record["task"])


def _problem(value: Any, kind: Any, where: str, task: str) -> str | None:
    if isinstance(kind, Section):
        if value is None and kind.null:
            return None
        if not isinstance(value, dict):
            return f"{where}: must be an object{' or null' if kind.null else ''}, got {_brief(value)}"
        unknown = sorted(set(value) - set(kind.fields))
        if unknown:
            return f"{_at(where, unknown[0])}: unknown field (this prunelora writes no such field)"
        for name, field in kind.fields.items():
            if name not in value:
                if field.optional:
                    continue
                return f"{_at(where, name)}: missing"
            problem = _problem(value[name], field.kind, _at(where, name), task)
            if problem:
                return problem
        return None
    if isinstance(kind, MapOf):
        if not isinstance(value, dict):
            return f"{where}: must be an object, got {_brief(value)}"
        for key, item in value.items():
            if not kind.kind.test(item):
                return f"{where}.{key}: must be {kind.kind.name}, got {_brief(item)}"
        return None
    if kind == CONFIG:
        return config_problem(value, task)
    if not kind.test(value):
        return f"{where}: must be {kind.name}, got {_brief(value)}"
    return None


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _brief(value: Any) -> str:
    text = json.dumps(value, allow_nan=True, default=str) if not isinstance(value, str) else repr(value)
    return shown(text if len(text) <= 40 else text[:37] + "...")


def config_problem(saved: Any, task: str) -> str | None:
    """None when `saved` is a configuration of `task` exactly as this prunelora writes one: it builds (no key
    unknown or missing, every value of its field's type) and building it changes nothing."""
    from ..config.causal_lm import LMConfig

    if not isinstance(saved, dict):
        return f"config: must be an object, got {_brief(saved)}"
    root = LMConfig if task == CAUSAL_LM else RunConfig
    missing = _missing_keys(root, saved, "config")
    if missing:
        return f"{missing}: missing"
    try:
        built = build(root, json.loads(json.dumps(saved)))
    except UserError as exc:
        return str(exc) if str(exc).startswith("config") else f"config: {exc}"
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return f"config: not a configuration this prunelora reads ({type(exc).__name__})"
    return _first_difference(saved, storage.json_ready(dataclasses.asdict(built)), "config")


def _missing_keys(root: type, saved: dict[str, Any], where: str) -> str | None:
    """The first field of the dataclass `root` (or of its nested dataclasses) that `saved` lacks."""
    hints = typing.get_type_hints(root)
    for field in dataclasses.fields(root):
        if field.name not in saved:
            return f"{where}.{field.name}"
        if dataclasses.is_dataclass(hints[field.name]) and isinstance(saved[field.name], dict):
            inner = _missing_keys(hints[field.name], saved[field.name], f"{where}.{field.name}")
            if inner:
                return inner
    return None


def _first_difference(saved: Any, again: Any, where: str) -> str | None:
    """Where a configuration differs from itself built again (a value of another JSON type counts)."""
    if isinstance(saved, dict) and isinstance(again, dict):
        for key in sorted(set(saved) | set(again)):
            if key not in saved or key not in again:
                return f"{where}.{key}: {'missing' if key not in saved else 'unknown field'}"
            found = _first_difference(saved[key], again[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(again, list) and len(saved) == len(again):
        for i, (a, b) in enumerate(zip(saved, again)):
            found = _first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    if type(saved) is not type(again) or saved != again:
        return f"{where}: must be {_brief(again)} as this prunelora reads it, got {_brief(saved)}"
    return None


def how_checked(record: dict[str, Any]) -> dict[str, str]:
    """Every field of a record, sections and leaves (by its dotted path, a figure or file by its key), and how
    verify checks it (DERIVED or DIGESTED): what the tamper tests and docs/records.md walk."""
    out: dict[str, str] = {}

    def walk(value: Any, kind: Any, how: str, where: str) -> None:
        if where:
            out[where] = how
        if isinstance(kind, Section) and isinstance(value, dict):
            for name, field in kind.fields.items():
                if name in value:
                    walk(value[name], field.kind, field.how, _at(where, name))
        elif isinstance(kind, MapOf) and isinstance(value, dict):
            for key in value:
                rerun = not (where == "evidence" and key.startswith(NOT_RERUN))
                out[f"{where}.{key}"] = how if rerun else DIGESTED

    walk(record, schema(record["task"], record["model_after"]["kind"]), DERIVED, "")
    return out


def record_identity() -> list[Any]:
    """What a stage's records depend on beyond its outputs: the record format, and the key signing them (a stage
    finished unsigned, or under an earlier format, is run again rather than left with records that say less)."""
    from .. import signing

    key = signing.active_key()
    return [FORMAT, storage.file_digest(key) if key is not None else None]
