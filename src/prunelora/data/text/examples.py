"""Reading a causal-LM dataset and the request: JSON lines in, examples and the forget/retain/holdout split out.

Three forms, told apart by the first line's fields: question/answer pairs (TOFU's format: `question`,
`answer`, optionally `paraphrased_answer`, `paraphrased_question` and `perturbed_answer`, a string or a list),
conversations (`messages`, the chat format of TRL and of most instruction data: a list of {role, content}, the
last the assistant's answer, the one before it the user's question, any before that - a system prompt, earlier
turns - the question's context, kept with it as an Asked), or plain text (`text`). Conversations are
question/answer pairs ("qa") whose questions carry their context. The field names are settings
(data.question_field, ...). An example's id is its `id` field,
else its line number from 0. The request (--forget) is a file of ids or a .jsonl of the forget examples
themselves (matched by id, else by their question and answer, or text).

A file of ids is read line by line, the same rule as the image task's (data/ids.py): blank lines are
skipped, a line whose first non-blank character is `#` is a comment, and every other line is one id,
verbatim but for the whitespace around it (`doc#1` is the id `doc#1`; there are no comments after an
id). An id that itself starts with `#` cannot be named this way: name its example in a .jsonl request.

Forgetting an example forgets its content: every training example whose question and answer (or text)
equal a forgotten one's is forgotten too, and the run is told which (forget_request's notes), since a copy
left in the retain set would teach it back. Files must be regular UTF-8 files (a FIFO, a folder or a
device is refused before it is opened). Every mistake is one UserError naming the file, the line and the
fix, with the user's strings shown escaped (errors.shown); nothing is read twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UserError, not_utf8, regular_file, shown

if TYPE_CHECKING:  # the field names a run reads; the data layer never imports the configuration
    from ...config.causal_lm import LMDataConfig


class Asked(str):
    """A question asked inside a conversation: the user's last message as the string, and the turns before it
    (role, content), a system prompt or earlier exchanges, as `before`. The chat template renders them
    (tokens.prompt_text); equal only to the same question after the same turns, so a copy is found by its whole
    conversation. A question without turns before it is a plain str."""

    before: tuple[tuple[str, str], ...]

    def __new__(cls, question: str, before: tuple[tuple[str, str], ...] = ()) -> Asked:
        asked = super().__new__(cls, question)
        asked.before = tuple((str(role), str(content)) for role, content in before)
        return asked

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other) is True and getattr(other, "before", ()) == self.before

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((str(self), self.before))

    def __reduce__(self):
        return Asked, (str(self), self.before)

    def messages(self) -> list[dict[str, str]]:
        """The conversation up to and with the question, as a chat template takes it."""
        return [{"role": role, "content": content} for role, content in self.before] + \
            [{"role": "user", "content": str(self)}]


def asked_in(question: str, like: str) -> str:
    """`question` asked after the same turns as `like` (a paraphrased question keeps its conversation)."""
    before = getattr(like, "before", ())
    return Asked(question, before) if before else question


@dataclass(frozen=True)
class Example:
    """One training example: the prompt (empty for plain text), the answer whose tokens carry the loss, and
    TOFU's extra answers where the data has them."""

    id: str
    prompt: str
    answer: str
    paraphrased: str | None = None
    perturbed: tuple[str, ...] = ()
    paraphrased_question: str | None = None  # the question worded differently (TOFU's), for robustness

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


JSONL_FIX = "give a UTF-8 .jsonl of question/answer pairs, conversations or plain text, one JSON object a line"
IDS_FIX = "give a UTF-8 text file of ids, one a line, or a .jsonl of examples"


def text_of(path: Path, what: str, fix: str) -> str:
    """The file's text: a regular file (checked before it is opened: a FIFO would block for ever), in UTF-8 (a
    byte-order mark dropped), without NUL bytes (a binary file); anything else is a one-line UserError."""
    regular_file(path, what, fix)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {shown(path)}: no such file ({fix})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown(path)} ({exc.strerror or type(exc).__name__}): {fix}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read {what} {shown(path)} ({not_utf8(exc)}): {fix}") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise UserError(f"cannot read {what} {shown(path)} (a NUL byte on line {line}: a binary file, not text): {fix}")
    return text


def _lines(path: Path, what: str = "data file") -> list[tuple[int, dict]]:
    rows = []
    text = text_of(path, what, JSONL_FIX).replace("\r\n", "\n").replace("\r", "\n")
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: a JSON string may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{shown(path)} line {number} is not JSON ({exc.msg}): give one JSON object a line") \
                from None
        if not isinstance(row, dict):
            raise UserError(f"{shown(path)} line {number} is not a JSON object: give one object a line")
        rows.append((number, row))
    if not rows:
        raise UserError(f"{shown(path)} holds no example: give one JSON object a line")
    return rows


def data_kind(path: Path, first: dict, cfg: LMDataConfig) -> str:
    """"qa" (question/answer pairs, or conversations) or "text", from the first example's fields."""
    if (cfg.question_field in first and cfg.answer_field in first) or cfg.messages_field in first:
        return "qa"
    if cfg.text_field in first:
        return "text"
    fields = ", ".join(shown(f) for f in sorted(first)) or "none"
    if isinstance(first.get("prompt"), str) and isinstance(first.get("completion"), str):  # TRL's prompt-completion
        raise UserError(f"{shown(path)} line 1 holds 'prompt' and 'completion' (TRL's format: the prompt's text as "
                        "the model reads it, the completion after it): give --set data.question_field=prompt --set "
                        "data.answer_field=completion --prompt-template \"{question}\" (the prompt as it is)")
    raise UserError(f"{shown(path)} line 1 has neither '{shown(cfg.question_field)}' and '{shown(cfg.answer_field)}', "
                    f"'{shown(cfg.messages_field)}' nor '{shown(cfg.text_field)}' (its fields: {fields}); name yours "
                    "with --set data.question_field=... --set data.answer_field=..., --set data.messages_field=... "
                    "or --set data.text_field=...")


def _conversation(path: Path, number: int, row: dict, name: str) -> tuple[str, str]:
    """(the question, an Asked where turns come before it; the answer) of a row's messages."""
    messages = row.get(name)
    where = f"{shown(path)} line {number}: '{shown(name)}'"
    if not isinstance(messages, list) or len(messages) < 2:
        raise UserError(f"{where} must be a list of at least two messages, the user's question and the assistant's "
                        "answer last")
    turns = []
    for position, message in enumerate(messages, 1):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise UserError(f"{where}: message {position} needs a 'role' and a text 'content' (strings)")
        turns.append((role, content))
    (asker, question), (answerer, answer) = turns[-2], turns[-1]
    if answerer != "assistant" or asker != "user" or not question.strip() or not answer.strip():
        raise UserError(f"{where} must end with the user's question and the assistant's answer (non-empty): the "
                        "answer carries the loss, the question and what comes before it the prompt")
    return (Asked(question, tuple(turns[:-2])) if len(turns) > 2 else question), answer


def _text(path: Path, number: int, row: dict, name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{shown(path)} line {number}: '{shown(name)}' is missing or not a non-empty string (every "
                        "example needs it, as the first has it)")
    return value


def _example(path: Path, number: int, index: int, row: dict, kind: str, cfg: LMDataConfig) -> Example:
    ident = row.get(cfg.id_field, index)
    if kind == "text":
        return Example(str(ident), "", _text(path, number, row, cfg.text_field))
    perturbed = row.get("perturbed_answer") or ()
    if isinstance(perturbed, str):
        perturbed = (perturbed,)
    if not all(isinstance(p, str) for p in perturbed):
        raise UserError(f"{shown(path)} line {number}: 'perturbed_answer' must be a string or a list of strings")
    extra = {}
    for name in ("paraphrased_answer", "paraphrased_question"):
        extra[name] = row.get(name)
        if extra[name] is not None and not isinstance(extra[name], str):
            raise UserError(f"{shown(path)} line {number}: '{name}' must be a string")
    if cfg.messages_field in row and cfg.question_field not in row:
        question, answer = _conversation(path, number, row, cfg.messages_field)
    else:
        question, answer = _text(path, number, row, cfg.question_field), _text(path, number, row, cfg.answer_field)
    paraphrased_question = extra["paraphrased_question"]
    return Example(str(ident), question, answer, extra["paraphrased_answer"], tuple(perturbed),
                   asked_in(paraphrased_question, question) if paraphrased_question is not None else None)


def read_examples(path: str | Path, cfg: LMDataConfig, kind: str | None = None,
                  what: str = "data file") -> tuple[str, list[Example]]:
    """(kind, examples) of a .jsonl; ids must be unique; `kind` given: the file must be of that form.
    what: what the file is, for errors about the file itself ('data file', '--forget')."""
    path = Path(path)
    rows = _lines(path, what)
    found = data_kind(path, rows[0][1], cfg)
    if kind is not None and found != kind:
        raise UserError(f"{shown(path)} holds {found} examples but the dataset holds {kind} examples: give both in "
                        "one form")
    examples = [_example(path, number, i, row, found, cfg) for i, (number, row) in enumerate(rows)]
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise UserError(f"{shown(path)}: the id '{shown(ex.id)}' appears twice (ids name examples: make them "
                            "unique)")
        seen.add(ex.id)
    return found, examples


def from_rows(rows: list[dict], cfg: LMDataConfig, where: str = "the data") -> tuple[str, list[Example]]:
    """(kind, examples) of rows already in memory (the embedded benchmark's), checked as a file's would be."""
    path = Path(where)
    kind = data_kind(path, rows[0], cfg)
    return kind, [_example(path, i + 1, i, row, kind, cfg) for i, row in enumerate(rows)]


def read_request(path: str | Path, train: list[Example], kind: str, cfg: LMDataConfig) -> list[str]:
    """The ids of the training examples a request forgets (forget_request's ids, without its notes)."""
    return forget_request(path, train, kind, cfg)[0]


def listed_ids(path: Path) -> list[str]:
    """The ids a file of ids lists, in its order: blank lines and comment lines (first non-blank character `#`)
    skipped, every other line one id, verbatim but for the whitespace around it (data/ids.py's rule)."""
    ids = (line.strip() for line in text_of(path, "--forget", IDS_FIX).splitlines())
    return [i for i in ids if i and not i.startswith("#")]


def _named(path: Path, train: list[Example], kind: str, cfg: LMDataConfig) -> list[str]:
    """The training ids a request names itself, in its order: a file of ids as listed; a .jsonl's examples each
    matched by id (when the training example of that id has its content), else by content."""
    by_id = {ex.id: ex for ex in train}
    if path.suffix == ".jsonl":
        _, named = read_examples(path, cfg, kind, what="--forget")
        first: dict[tuple[str, str], str] = {}
        for ex in train:
            first.setdefault(ex.content(), ex.id)
        ids = [ex.id if ex.id in by_id and by_id[ex.id].content() == ex.content() else first.get(ex.content(), "")
               for ex in named]
        missing = [ex.id for ex, i in zip(named, ids) if not i]
        what = "examples (matched by id, else by their " + ("text)" if kind == "text" else "question and answer)")
    else:
        ids = listed_ids(path)
        missing = [i for i in ids if i not in by_id]
        what = "ids"
    if not ids:
        raise UserError(f"--forget {shown(path)} names nothing: give one id a line (or one example a line in a "
                        ".jsonl)")
    if missing:
        first_few = ", ".join(f"'{shown(m)}'" for m in missing[:3])
        raise UserError(f"--forget {shown(path)}: {len(missing)} {what} match no training example (first: "
                        f"{first_few}); an id here looks like '{shown(train[0].id)}'")
    seen: set[str] = set()
    for i in ids:  # a set, not ids.count per id: a million ids take a second, not hours
        if i in seen:
            raise UserError(f"--forget {shown(path)} names '{shown(i)}' more than once: list each example once")
        seen.add(i)
    return ids


def forget_request(path: str | Path, train: list[Example], kind: str,
                   cfg: LMDataConfig) -> tuple[list[str], list[str]]:
    """(ids, notes): the training examples a request forgets (a file of ids, or a .jsonl of the examples), every
    copy of their content included (with_copies), and the sentences for the run's warnings that say which copies
    were added. A request that leaves nothing to keep is a UserError."""
    path = Path(path)
    return with_copies(train, _named(path, train, kind, cfg), kind, f"--forget {shown(path)}")


def with_copies(train: list[Example], named: list[str], kind: str, where: str) -> tuple[list[str], list[str]]:
    """(ids, notes): `named` (training ids), then every other training example whose question and answer (or text)
    equal a named one's, in dataset order; notes: one sentence naming the copies added, where there are any.

    Forgetting an example forgets its content: a copy left in the retain set would teach the model back what it is
    asked to forget. where: what named them, for messages ('--forget r.txt'). Forgetting every training example is
    a UserError."""
    by_id = {ex.id: ex for ex in train}
    origin: dict[tuple[str, str], str] = {}  # content -> the named id it is forgotten as
    for i in named:
        origin.setdefault(by_id[i].content(), i)
    chosen = set(named)
    copies = [(ex.id, origin[ex.content()]) for ex in train if ex.id not in chosen and ex.content() in origin]
    what = "text" if kind == "text" else "question and answer"
    if len(chosen) + len(copies) >= len(train):
        also = f" ({len(copies)} of them as copies of the {what} of examples it names)" if copies else ""
        raise UserError(f"{where} names every training example{also}: nothing would be left to keep")
    if not copies:
        return list(named), []
    listed = ", ".join(f"'{shown(c)}' (a copy of '{shown(o)}')" for c, o in copies[:3])
    many = len(copies) > 1
    note = (f"{where}: {len(copies)} training example{'s' if many else ''} the request does not name "
            f"{'hold' if many else 'holds'} the {what} of one it names and {'are' if many else 'is'} forgotten too: "
            f"{listed}{', ...' if len(copies) > 3 else ''} (a copy left to keep would teach it back)")
    return list(named) + [c for c, _ in copies], [note]


def split(kind: str, train: list[Example], forget_ids: list[str], holdout: list[Example],
          request: str) -> LMSplits:
    """Retain and forget in the dataset's order; a holdout example may not be a training example, and something
    must be left to keep (an empty retain set leaves nothing to train, tune or measure on)."""
    chosen = set(forget_ids)
    if train and all(ex.id in chosen for ex in train):
        raise UserError(f"{shown(request) or 'the request'} forgets every training example: nothing would be left to "
                        "keep")
    trained = {ex.content() for ex in train}
    clash = [ex.id for ex in holdout if ex.content() in trained]
    if clash:
        raise UserError(f"--holdout: example '{shown(clash[0])}' is also a training example: holdout examples must be "
                        "ones never trained on")
    return LMSplits(kind, [ex for ex in train if ex.id not in chosen], [ex for ex in train if ex.id in chosen],
                    holdout, request)


def request_digest(examples: list[Example]) -> str:
    """sha256 of the examples a request names, content and ids (a record's proof of what was forgotten); a
    conversation's turns before its question count too."""
    def fields(ex: Example) -> tuple:
        values = dataclasses.astuple(ex)
        turns = [list(map(list, getattr(ex.prompt, "before", ()))), list(map(list, getattr(ex.paraphrased_question,
                                                                                          "before", ())))]
        return values + (turns,) if any(turns) else values  # without turns: the digest data had before them

    return hashlib.sha256(json.dumps([fields(ex) for ex in examples]).encode()).hexdigest()


def to_rows(examples: list[Example], cfg: LMDataConfig, kind: str) -> list[dict]:
    """Examples back as JSON rows of the dataset's form (the embedded benchmark's files)."""
    if kind == "text":
        return [{cfg.id_field: ex.id, cfg.text_field: ex.answer} for ex in examples]
    rows = []
    for ex in examples:
        if isinstance(ex.prompt, Asked):  # a conversation is written back as one
            row = {cfg.id_field: ex.id, cfg.messages_field: ex.prompt.messages() + [
                {"role": "assistant", "content": ex.answer}]}
        else:
            row = {cfg.id_field: ex.id, cfg.question_field: ex.prompt, cfg.answer_field: ex.answer}
        if ex.paraphrased is not None:
            row["paraphrased_answer"] = ex.paraphrased
        if ex.perturbed:
            row["perturbed_answer"] = list(ex.perturbed)
        if ex.paraphrased_question is not None:
            row["paraphrased_question"] = ex.paraphrased_question
        rows.append(row)
    return rows
