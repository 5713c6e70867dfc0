"""`prunelora verify RECORD`: is the delivered model the one tested, on the data the request named?

An auditor holds a record (driver/record.py) and nothing else of the run. verify checks it in three steps and
stops at the first that fails, so a changed record costs milliseconds, not a measurement:

1. the record itself: its schema (a field missing, unknown or of the wrong type is "malformed": exit 2, one
   line naming the field), its signature (with --public-key: signed by that key), its digest (nothing changed
   since it was written), what the stored configuration fixes (method, epochs, seed, model, the verdict's
   thresholds) and the chain of a sequence's earlier records;
2. the delivered model: the sha256 of every file, compared by content (a copy under another name is the same
   model);
3. the data and the evidence: the request re-derived from the data (ids, counts, the forgotten samples' hash),
   every figure measured again through its task (driver/remeasure.py) and compared within --tolerance, the
   verdict and its reasons read again from the figures.

Exit 0 when everything matches, 1 when anything differs (each difference said), 2 for bad input. Nothing a
record names is imported or run: a py: model is rebuilt only from the factory the user names
(--model-factory), after its weights' hash has been checked; the working directory and the record's folder are
never on sys.path (--factory-path adds a folder). docs/records.md lists what is re-derived and what is only
covered by the digest.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import signing
from .driver import remeasure
from .driver.record import EARLIER_FORMATS, FORMAT, NOT_RERUN, digest_of, malformed, signed_bytes, weight_hashes
from .errors import UserError, shown
from .ledger import file_hash
from .registry import CAUSAL_LM, IMAGE

DEFAULT_TOLERANCE = 1e-3  # in each figure's own unit: measured again on another machine, floats may move
MAX_DEPTH = 64  # nesting a record never needs (its configuration is 4 deep): deeper is malformed, not a crash
TASKS = {IMAGE: remeasure.image, CAUSAL_LM: remeasure.causal_lm}  # who measures a record's model again
UNSIGNED = "unsigned: anyone could have written this record (sign with --sign-key, check with --public-key)"


class Malformed(UserError):
    """A record that is no record of this format: one line naming the field, exit 2."""


def check_tolerance(value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise UserError(f"--tolerance must be a finite number >= 0 (a figure's largest allowed difference), "
                        f"got {value}")
    return float(value)


def _parse(text: str, path: Path) -> Any:
    """Strict JSON: no NaN or Infinity, no number too large for a float, no key twice, no deep nesting."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise Malformed(f"malformed record {shown(path)}: the key {shown(key)!r} appears twice in one object")
            seen[key] = value
        return seen

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise Malformed(f"malformed record {shown(path)}: the number {shown(text[:20])} is out of range")
        return value

    def constant(name: str) -> float:
        raise Malformed(f"malformed record {shown(path)}: {name} is not JSON (a figure that could not be measured "
                        "is null)")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_float=number, parse_constant=constant)
    except RecursionError:
        raise Malformed(f"malformed record {shown(path)}: nested deeper than JSON is read here (a record is "
                        f"{MAX_DEPTH} levels at most)") from None
    except ValueError:
        raise UserError(f"{shown(path)} is not JSON: give a record.json written by prunelora") from None


def _depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests deeper than `limit` (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return False


def read_record(path: Path) -> dict[str, Any]:
    """The record at `path` (a record file, or a delivered folder holding record.json), checked against the
    schema; a malformed one is a UserError naming the field (exit 2)."""
    if path.is_dir():
        path = path / "record.json"
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such record (give the record.json a run wrote beside its delivered model)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{shown(path)} is not JSON (not UTF-8): give a record.json written by prunelora") from None
    record = _parse(text, path)
    form = record.get("format") if isinstance(record, dict) else None
    if form in EARLIER_FORMATS:
        raise UserError(f"{shown(path)} was written by an earlier prunelora (format {form}), whose records prove "
                        f"less and are not read: rerun the command (into a new --out, or with --overwrite: a finished "
                        f"stage keeps its record) to write a {FORMAT} record")
    if form != FORMAT:
        raise UserError(f"{shown(path)} is not a prunelora record (format {FORMAT}): give the record.json a run wrote")
    if _depth(record):
        raise Malformed(f"malformed record {shown(path)}: nested deeper than {MAX_DEPTH} levels")
    problem = malformed(record)
    if problem:
        raise Malformed(f"malformed record {shown(path)}: {problem}")
    return record


class Checks:
    """The checks said so far, one line each, and the ones that differ."""

    def __init__(self, say: Callable[[str], Any]) -> None:
        self.say, self.differences = say, []

    def __call__(self, ok: bool, what: str, detail: str) -> None:
        self.say(f"{'ok' if ok else 'DIFFERS'}: {what}: {detail}")
        if not ok and what not in self.differences:
            self.differences.append(what)


def verify(record_file: str, model: str | None = None, dataset: str | None = None, data_root: str | None = None,
           tolerance: float = DEFAULT_TOLERANCE, public_key: str | None = None, model_factory: str | None = None,
           factory_path: tuple[str, ...] = (), say=print) -> bool:
    """Every check of the record at `record_file`, each said in one line; True when all match (module docstring)."""
    tolerance = check_tolerance(tolerance)
    path = Path(record_file)
    record_at = path / "record.json" if path.is_dir() else path
    trusted = signing.load_public_key(public_key) if public_key else None
    record = read_record(path)
    folder = record_at.parent
    check = Checks(say)
    earlier = _check_record(record, record_at, trusted, check)
    if check.differences:
        return _conclude(check, say, "the record")
    delivered = Path(model) if model else folder / record["model_after"]["path"]
    if not delivered.exists():
        raise UserError(f"{shown(delivered)}: the delivered model is not there (give --model PATH)")
    _check_model(record, delivered, check)
    if check.differences:
        return _conclude(check, say, "the model")
    factory = (model_factory, tuple(factory_path), (folder,)) if model_factory else None
    with remeasure.import_paths(tuple(factory_path), (folder,)):
        found = _remeasured(record, delivered, dataset, data_root, earlier, factory)
    _check_data(record, found, dataset, check)
    _check_evidence(record, found, tolerance, check)
    return _conclude(check, say)


# -- 1. the record -----------------------------------------------------------------------------------------------
def _check_record(record: dict[str, Any], path: Path, trusted, check: Checks) -> dict[int, list[str]]:
    """Signature, digest, settings and chain; returns the ids of the sequence's earlier requests (by number)."""
    _check_signature(record, trusted, check)
    same = digest_of(record) == record["digest"]
    check(same, "digest", "the record is as it was written" if same else
          "the record was changed after it was written (its digest is not its content's)")
    if not same:
        return {}
    problems = _settings(record)
    check(not problems, "settings", "method, epochs, seed, model and thresholds are the configuration's and the "
          "code's" if not problems else "; ".join(problems))
    return _check_chain(record, path, trusted, check)


def _check_signature(record: dict[str, Any], trusted, check: Checks) -> None:
    signature = record.get("signature")
    if signature is None:
        if trusted is not None:
            check(False, "signature", f"the record is unsigned, but --public-key expects a record signed by key "
                                      f"{signing.fingerprint(trusted)}")
        else:
            check.say(UNSIGNED)
        return
    problem = signing.check(signed_bytes(record), signature, trusted)
    if problem:
        check(False, "signature", problem)
    elif trusted is not None:
        check(True, "signature", f"signed by the given public key {signature['fingerprint']}")
    else:
        check(True, "signature", f"signed by key {signature['fingerprint']}, the record's own: give --public-key to "
                                 "check it is the key you trust")


def _settings(record: dict[str, Any]) -> list[str]:
    """What the stored configuration (and the code) fix that the record restates: each disagreement, said."""
    config, problems = record["config"], []
    method, epochs, seed = record["method"], record["epochs"], record["seed"]
    if method not in config["methods"]:
        problems.append(f"method {shown(method)} is not among the configuration's ({', '.join(config['methods'])})")
    if seed not in config["seeds"]:
        problems.append(f"seed {seed} is not among the configuration's {config['seeds']}")
    if record["task"] == CAUSAL_LM:
        model = config["model"]["model"]
        name = (Path(model[len("hf:"):]).name if model else config["model"]["family"]) or "model"
        budget = config["unlearn"]["epochs"]
        budgets = [budget]
        if record["request"]["request"] != 1:
            problems.append("a causal-LM run has one request")
    else:
        name, budget = None, config["unlearn"]["epochs"]
        budgets = budget if isinstance(budget, list) else [budget] if budget is not None else None
        if config["unlearn"].get("until_forget_acc") is not None:
            budgets = None  # a run stopped early by its target: any epoch up to the last budget
    if name is not None and record["model"] != name:
        problems.append(f"model {shown(record['model'])} is not the configuration's {shown(name)}")
    if record["task"] == IMAGE and record["model"] not in config["models"]:
        problems.append(f"model {shown(record['model'])} is not among the configuration's models")
    if epochs is not None and budgets is not None and epochs not in budgets:
        problems.append(f"epochs {epochs} is not a budget of the configuration ({budget})")
    if epochs is not None and budgets is None and isinstance(budget, list) and budget and epochs > max(budget):
        problems.append(f"epochs {epochs} is beyond the configuration's budgets ({budget})")
    if record["verdict"]["thresholds"] != remeasure.thresholds_of(record["task"]):
        problems.append("the verdict's thresholds are not this prunelora's")
    first = record["request"]["request"] == 1
    if first != (record["previous_record"] is None):
        problems.append("request 1 has no previous record" if first else
                        f"request {record['request']['request']} of a sequence names no previous record")
    return problems


def _check_chain(record: dict[str, Any], path: Path, trusted, check: Checks) -> dict[int, list[str]]:
    """Each earlier record of a sequence, back to the first: there, with the sha256 the next one holds, intact
    (its own digest; its signature by the same key), one request earlier, of the same model, method and seed."""
    ids: dict[int, list[str]] = {}
    current, at = record, path
    while current["previous_record"] is not None:
        link = current["previous_record"]
        earlier_at = at.parent / link["path"]
        number = current["request"]["request"] - 1
        if not earlier_at.is_file() or file_hash(earlier_at) != link["sha256"]:
            check(False, "chain", f"the record of request {number} ({shown(earlier_at)}) is "
                                  f"{'missing' if not earlier_at.is_file() else 'not the one this record names'}")
            return ids
        try:
            earlier = read_record(earlier_at)
        except UserError as exc:
            check(False, "chain", f"the record of request {number} does not read: {exc}")
            return ids
        wrong = [k for k in ("task", "model", "method", "seed", "config") if earlier[k] != record[k]]
        if earlier["request"]["request"] != number:
            wrong.append("request")
        if digest_of(earlier) != earlier["digest"]:
            wrong.append("digest")
        signature = earlier.get("signature")
        if trusted is not None and (signature is None or signing.check(signed_bytes(earlier), signature, trusted)):
            wrong.append("signature")
        if wrong:
            check(False, "chain", f"the record of request {number} ({shown(earlier_at)}) differs in "
                                  f"{', '.join(wrong)}")
            return ids
        ids[number] = earlier["request"]["ids"]
        current, at = earlier, earlier_at
    if record["previous_record"] is not None:
        check(True, "chain", f"the {record['request']['request'] - 1} earlier record(s) of the sequence are the ones "
                             "this record names, intact")
    return ids


# -- 2. the model ------------------------------------------------------------------------------------------------
def _check_model(record: dict[str, Any], delivered: Path, check: Checks) -> None:
    """Every file of the delivered model by content: a folder's files by their paths inside it, a file alone."""
    recorded = record["model_after"]["weight_files"]
    folder = record["model_after"]["path"] == "."
    if folder != delivered.is_dir():
        check(False, "model", f"{shown(delivered)} is a {'folder' if delivered.is_dir() else 'file'}, the record's "
                              f"model a {'folder' if folder else 'file'}")
        return
    found = weight_hashes(delivered)
    if folder:
        changed = sorted(k for k in set(recorded) | set(found) if recorded.get(k) != found.get(k))
        detail = [f"{k} ({'added' if k not in recorded else 'missing' if k not in found else 'changed'})"
                  for k in changed[:3]]
    else:
        changed = [] if sorted(found.values()) == sorted(recorded.values()) else [delivered.name]
        detail = [f"{shown(delivered.name)} has other content than the recorded model"] if changed else []
    check(not changed, "model", f"the {len(found)} file(s) of {shown(delivered)} "
          + ("have the recorded sha256" if not changed else f"differ from the record: {', '.join(detail)}"
             + (", ..." if len(changed) > 3 else "")))


# -- 3. the data and the evidence --------------------------------------------------------------------------------
def _remeasured(record: dict[str, Any], delivered: Path, dataset: str | None, data_root: str | None,
                earlier: dict[int, list[str]], factory) -> remeasure.Remeasured:
    return TASKS[record["task"]](record, delivered, dataset, data_root, earlier, factory)


def _check_data(record: dict[str, Any], found: remeasure.Remeasured, dataset: str | None, check: Checks) -> None:
    then, now = record["request"], found.request
    differ = [k for k in then if _request_value(now.get(k)) != _request_value(then[k])]
    source = (record.get("data") or {}).get("train") or record["config"]["data"].get("dataset")
    detail = f"{now['samples']} forgotten samples of {shown(dataset or source)} "
    if differ:
        notes = []
        for k in differ[:4]:
            if k == "ids" and then["ids"] is not None and now.get("ids") is not None:
                notes.append(f"ids ({len(set(map(str, then['ids'])) ^ set(map(str, now['ids'])))} differ)")
            elif k in ("forget_sha256", "all_forgotten_sha256"):
                notes.append(k)
            else:
                notes.append(f"{k} {_short(now.get(k))} now, {_short(then[k])} in the record")
        detail += f"differ from the record's request: {'; '.join(notes)}"
    else:
        detail += "have the recorded ids, count and sha256"
    check(not differ, "data", detail)
    for ok, said in found.request_files:
        check(ok, "request file", said)
    for name, value in found.facts.items():
        same = record.get(name) == value
        check(same, name.replace("_", " "), f"{_short(value)}" + ("" if same else f" now, {_short(record.get(name))} "
                                                                                 "in the record"))


def _request_value(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, list) else value


def _short(value: Any) -> str:
    text = json.dumps(value)
    return shown(text if len(text) <= 30 else text[:27] + "...")


def _check_evidence(record: dict[str, Any], found: remeasure.Remeasured, tolerance: float, check: Checks) -> None:
    recorded, measured = record["evidence"], found.figures
    not_rerun = {k for k in recorded if k.startswith(NOT_RERUN) and k not in measured}
    missing = sorted(k for k in measured if k not in recorded)
    moved = [f"{k} {_figure(measured[k])} vs {_figure(recorded[k])}" for k in measured
             if k in recorded and not remeasure.same_figures(measured[k], recorded[k], tolerance)]
    unknown = sorted(k for k in recorded if k not in measured and k not in not_rerun)
    problems = moved + ([f"missing from the record: {', '.join(missing[:6])}"] if missing else []) \
        + ([f"no measure gives {', '.join(unknown[:6])}"] if unknown else [])
    skipped = sorted(not_rerun)
    check(not problems, "evidence", f"{len(measured)} figures measured again "
          + (f"agree with the record within {tolerance:g}" if not problems else f"differ: {'; '.join(problems[:4])}")
          + (f" (not re-run, they need the model the run started from: {', '.join(skipped[:6])}"
             f"{', ...' if len(skipped) > 6 else ''}; covered by the digest)" if skipped else ""))
    stated = (record["verdict"]["standalone"], record["verdict"]["reasons"])
    from_record = found.rule(dict(recorded))
    word = found.rule({**{k: recorded[k] for k in not_rerun}, **measured})[0]
    ok = from_record == stated and word == stated[0]
    if from_record != stated:
        detail = (f"the record's figures give {from_record[0]!r} with other reasons" if from_record[0] == stated[0]
                  else f"the record's figures give {from_record[0]!r}, the record says {stated[0]!r}")
    elif word != stated[0]:
        detail = f"{word!r} now, {stated[0]!r} in the record"
    else:
        detail = f"{word!r}, with its reasons, from the figures"
    check(ok, "verdict", shown(detail))


def _figure(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else shown(json.dumps(value))


def _conclude(check: Checks, say, stopped: str | None = None) -> bool:
    if not check.differences:
        say("verified: the delivered model is the one tested, on the data the request named")
        return True
    after = f" (stopped at {stopped}: the later checks need it to match)" if stopped else ""
    verb = "differs" if len(check.differences) == 1 else "differ"
    say(f"NOT verified: {', '.join(check.differences)} {verb} from the record{after}")
    return False


__all__ = ["DEFAULT_TOLERANCE", "Malformed", "check_tolerance", "read_record", "verify"]
