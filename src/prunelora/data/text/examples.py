"""Reading a causal-LM dataset and the request: JSON lines in, examples and the forget/retain/holdout split out.

Two forms, told apart by the first line's fields: question/answer pairs (TOFU's format: `question`,
`answer`, optionally `paraphrased_answer` and `perturbed_answer`, a string or a list) or plain text
(`text`). The field names are settings (data.question_field, ...). An example's id is its `id` field,
else its line number from 0. The request (--forget) is a file of ids, one a line (# comments), or a
.jsonl of the forget examples themselves (matched by id, else by their question and answer, or text).
Every mistake is one UserError naming the file, the line and the fix; nothing is read twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UserError

if TYPE_CHECKING:  # the field names a run reads; the data layer never imports the configuration
    from ...config.causal_lm import LMDataConfig


@dataclass(frozen=True)
class Example:
    """One training example: the prompt (empty for plain text), the answer whose tokens carry the loss, and
    TOFU's extra answers where the data has them."""

    id: str
    prompt: str
    answer: str
    paraphrased: str | None = None
    perturbed: tuple[str, ...] = ()

    def content(self) -> tuple[str, str]:
        return self.prompt, self.answer


@dataclass
class LMSplits:
    """A request applied to a dataset: what is forgotten, what is kept, what was never trained on."""

    kind: str  # "qa" | "text"
    retain: list[Example]
    forget: list[Example]
    holdout: list[Example] = field(default_factory=list)
    request: str = ""  # how the request was given, for rows and records

    @property
    def train(self) -> list[Example]:
        return self.retain + self.forget


def _lines(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file (give a .jsonl of question/answer pairs or of plain text)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} line {number} is not JSON ({exc.msg}): give one JSON object a line") from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {number} is not a JSON object: give one object a line")
            rows.append((number, row))
    if not rows:
        raise UserError(f"{path} holds no example: give one JSON object a line")
    return rows


def data_kind(path: Path, first: dict, cfg: LMDataConfig) -> str:
    """"qa" or "text", from the first example's fields."""
    if cfg.question_field in first and cfg.answer_field in first:
        return "qa"
    if cfg.text_field in first:
        return "text"
    raise UserError(f"{path} line 1 has neither '{cfg.question_field}' and '{cfg.answer_field}' nor "
                    f"'{cfg.text_field}' (its fields: {', '.join(sorted(first)) or 'none'}); name yours with "
                    "--set data.question_field=... data.answer_field=... or data.text_field=...")


def _text(path: Path, number: int, row: dict, name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path} line {number}: '{name}' is missing or not a non-empty string (every example needs "
                        "it, as the first has it)")
    return value


def _example(path: Path, number: int, index: int, row: dict, kind: str, cfg: LMDataConfig) -> Example:
    ident = row.get(cfg.id_field, index)
    if kind == "text":
        return Example(str(ident), "", _text(path, number, row, cfg.text_field))
    perturbed = row.get("perturbed_answer") or ()
    if isinstance(perturbed, str):
        perturbed = (perturbed,)
    if not all(isinstance(p, str) for p in perturbed):
        raise UserError(f"{path} line {number}: 'perturbed_answer' must be a string or a list of strings")
    paraphrased = row.get("paraphrased_answer")
    if paraphrased is not None and not isinstance(paraphrased, str):
        raise UserError(f"{path} line {number}: 'paraphrased_answer' must be a string")
    return Example(str(ident), _text(path, number, row, cfg.question_field), _text(path, number, row, cfg.answer_field),
                   paraphrased, tuple(perturbed))


def read_examples(path: str | Path, cfg: LMDataConfig, kind: str | None = None) -> tuple[str, list[Example]]:
    """(kind, examples) of a .jsonl; ids must be unique; `kind` given: the file must be of that form."""
    path = Path(path)
    rows = _lines(path)
    found = data_kind(path, rows[0][1], cfg)
    if kind is not None and found != kind:
        raise UserError(f"{path} holds {found} examples but the dataset holds {kind} examples: give both in one form")
    examples = [_example(path, number, i, row, found, cfg) for i, (number, row) in enumerate(rows)]
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise UserError(f"{path}: the id '{ex.id}' appears twice (ids name examples: make them unique)")
        seen.add(ex.id)
    return found, examples


def from_rows(rows: list[dict], cfg: LMDataConfig, where: str = "the data") -> tuple[str, list[Example]]:
    """(kind, examples) of rows already in memory (the embedded benchmark's), checked as a file's would be."""
    path = Path(where)
    kind = data_kind(path, rows[0], cfg)
    return kind, [_example(path, i + 1, i, row, kind, cfg) for i, row in enumerate(rows)]


def read_request(path: str | Path, train: list[Example], kind: str, cfg: LMDataConfig) -> list[str]:
    """The ids of the training examples a request names (a file of ids, or a .jsonl of the examples)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--forget {path}: no such file (give a file of ids, one a line, or a .jsonl of examples)")
    by_id = {ex.id: ex for ex in train}
    if path.suffix == ".jsonl":
        _, named = read_examples(path, cfg, kind)
        by_content = {ex.content(): ex.id for ex in train}
        ids = [ex.id if ex.id in by_id and by_id[ex.id].content() == ex.content() else by_content.get(ex.content(), "")
               for ex in named]
        missing = [ex.id for ex, i in zip(named, ids) if not i]
        what = "examples (matched by id, else by their question and answer)"
    else:
        text = path.read_text(encoding="utf-8")
        ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        ids = [i for i in ids if i]
        missing = [i for i in ids if i not in by_id]
        what = "ids"
    if not ids:
        raise UserError(f"--forget {path} names nothing: give one id a line (or one example a line in a .jsonl)")
    if missing:
        raise UserError(f"--forget {path}: {len(missing)} {what} match no training example (first: "
                        f"{', '.join(missing[:3])}); an id here looks like '{train[0].id}'")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"--forget {path} names '{twice[0]}' more than once: list each example once")
    if len(ids) == len(train):
        raise UserError(f"--forget {path} names every training example: nothing would be left to keep")
    return ids


def split(kind: str, train: list[Example], forget_ids: list[str], holdout: list[Example],
          request: str) -> LMSplits:
    """Retain and forget in the dataset's order; a holdout example may not be a training example."""
    chosen = set(forget_ids)
    trained = {ex.content() for ex in train}
    clash = [ex.id for ex in holdout if ex.content() in trained]
    if clash:
        raise UserError(f"--holdout: example '{clash[0]}' is also a training example: holdout examples must be "
                        "ones never trained on")
    return LMSplits(kind, [ex for ex in train if ex.id not in chosen], [ex for ex in train if ex.id in chosen],
                    holdout, request)


def request_digest(examples: list[Example]) -> str:
    """sha256 of the examples a request names, content and ids (a record's proof of what was forgotten)."""
    return hashlib.sha256(json.dumps([dataclasses.astuple(ex) for ex in examples]).encode()).hexdigest()


def to_rows(examples: list[Example], cfg: LMDataConfig, kind: str) -> list[dict]:
    """Examples back as JSON rows of the dataset's form (the embedded benchmark's files)."""
    if kind == "text":
        return [{cfg.id_field: ex.id, cfg.text_field: ex.answer} for ex in examples]
    rows = []
    for ex in examples:
        row = {cfg.id_field: ex.id, cfg.question_field: ex.prompt, cfg.answer_field: ex.answer}
        if ex.paraphrased is not None:
            row["paraphrased_answer"] = ex.paraphrased
        if ex.perturbed:
            row["perturbed_answer"] = list(ex.perturbed)
        rows.append(row)
    return rows
