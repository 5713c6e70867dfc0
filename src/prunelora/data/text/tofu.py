"""TOFU's released files read as TOFU defines its splits: `--dataset tofu:DIR`.

DIR holds the JSON files of the Hugging Face dataset locuslab/TOFU as distributed (revision 324592d, 2025-03-27),
each JSON lines: one object a line (a JSON array is read too). The fields are `question` and `answer`; the
`_perturbed` files add `paraphrased_answer` (a string), `perturbed_answer` (a list of strings: 5 per question
for forget/retain, 3 for real authors and world facts) and `paraphrased_question`. For a forget split
("forget01", "forget05", "forget10") the reader needs:

    forget10.json, forget10_perturbed.json   the forget set and its options (the same questions, in order)
    retain90.json                            the retain set (retain{100 - N}: TOFU's data_module.py)
    retain_perturbed.json                    the retain side TOFU measures, with its options (400 questions)
    real_authors_perturbed.json              real authors: question, answer, perturbed_answer
    world_facts_perturbed.json               world facts: question, answer, perturbed_answer
    holdout10.json (optional)                never trained on: the membership attacks (holdout10.jsonl, the
                                             name before 2025-03, is read too; holdout10_perturbed.json, where
                                             present, gives its options)

full.json, real_authors.json and world_facts.json are not read (TOFU's evaluation reads the _perturbed files).
Which file each set comes from, and which answer is the "paraphrased" one, follow TOFU's evaluation:
locuslab/tofu commit bdc209ea7c6cc2e7079ea1afb6468d3ddcc65f8e, config/eval_everything.yaml (split_list,
base_answer_key: paraphrased_answer for retain and forget, answer for real authors and world facts) and
data_module.py (retain split = "retain" + str(100 - N)); open-unlearning commit d3d7cf9 configs/data/datasets/
TOFU_*.yaml (the same files; holdout{N} for the attacks).

Ids: TOFU's rows have none; an example's id is its file's name and its 0-based row in that file, 4 digits:
"forget10-0007", "retain90-0123", "holdout10-0000", and "real_authors-0042", "world_facts-0116" for the rows
of the _perturbed files TOFU measures them from. That row is the `index` TOFU and open-unlearning give it
(add_dataset_index, per file), so a per-example export lines up with their per-index logs; it is stable for
the released files and readable in a --forget list. A forget row's options come from the same row of its
_perturbed file, whose question must be the same. A retain_perturbed row whose question and answer are a
retain example's is measured as that example (its id, the options attached); one that is not keeps
"retain_perturbed-0123". Every row is kept: open-unlearning measures all 400 retain_perturbed rows and the
whole forget set (TOFU's own eval_everything.yaml cut each set to its first 300 rows, ds_size: 300).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError, path_kind, shown
from .examples import Example, LMSplits, text_of

PREFIX = "tofu:"
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}  # data_module.py
RATIOS = {0.01: "forget01", 0.05: "forget05", 0.1: "forget10"}
REAL_AUTHORS, WORLD_FACTS = "real_authors", "world_facts"  # the evaluation sets' names in a model's measures
RETAIN_EVAL = "retain_perturbed"
SOURCE = "the Hugging Face dataset locuslab/TOFU"
FIX = f"give TOFU's files as released ({SOURCE})"


@dataclass(frozen=True)
class TofuData:
    """One TOFU forget split: what is trained on and forgotten, and what TOFU measures a model on.

    forget and retain are the training examples (train: retain first, then forget); the
    forget examples carry their paraphrased and perturbed answers, and so do the retain examples that
    retain_perturbed holds. retain_eval is the retain side TOFU measures (retain_perturbed, in its order);
    real_authors and world_facts are its two utility sets, whose "paraphrased" answer is the answer itself."""

    split: str
    forget: list[Example]
    retain: list[Example]
    holdout: list[Example]
    retain_eval: list[Example]
    real_authors: list[Example]
    world_facts: list[Example]

    @property
    def train(self) -> list[Example]:
        return self.retain + self.forget

    @property
    def request(self) -> str:
        return f"TOFU {self.split}"

    def splits(self) -> LMSplits:
        """The request applied: retain, forget and holdout as the rest of the causal-LM task reads them."""
        return LMSplits("qa", list(self.retain), list(self.forget), list(self.holdout), self.request)

    def eval_sets(self) -> dict[str, list[Example]]:
        """What a model is measured on, by the names the evidence entries read (TOFU's model utility reads
        retain, real_authors and world_facts)."""
        return {"forget": self.forget, "retain": self.retain_eval, "holdout": self.holdout,
                REAL_AUTHORS: self.real_authors, WORLD_FACTS: self.world_facts}


def is_tofu(dataset: str) -> bool:
    """Whether a --dataset value names TOFU's files ("tofu:DIR")."""
    return dataset.startswith(PREFIX)


def split_for_ratio(ratio: float) -> str:
    """TOFU's forget split of a forget ratio: 0.01, 0.05, 0.1 -> forget01, forget05, forget10."""
    for value, name in RATIOS.items():
        if abs(ratio - value) < 1e-9:
            return name
    raise UserError(f"TOFU forgets 1%, 5% or 10% of its authors: give --forget-ratio 0.01, 0.05 or 0.1, not {ratio}")


def needed_files(split: str) -> tuple[str, ...]:
    """The files a forget split cannot be read without, in the order they are checked."""
    _check_split(split)
    return (f"{split}.json", f"{split}_perturbed.json", f"{RETAIN_OF[split]}.json", f"{RETAIN_EVAL}.json",
            f"{REAL_AUTHORS}_perturbed.json", f"{WORLD_FACTS}_perturbed.json")


def read_tofu(dataset: str | Path, split: str = "forget10") -> TofuData:
    """TofuData of a folder of TOFU's files ("tofu:DIR" or DIR) for one forget split; a missing file, a bad row
    or a _perturbed file whose questions are not its set's is a one-line UserError naming the file and the fix."""
    folder = Path(str(dataset).removeprefix(PREFIX))
    _check_folder(folder, split)
    number = split.removeprefix("forget")
    forget = _with_options(_examples(folder, f"{split}.json"), folder, f"{split}_perturbed.json")
    retain = _examples(folder, f"{RETAIN_OF[split]}.json")
    retain, retain_eval = _retain_eval(retain, _examples(folder, f"{RETAIN_EVAL}.json", options=True))
    return TofuData(split, forget, retain, _holdout(folder, f"holdout{number}"), retain_eval,
                    _utility_set(folder, REAL_AUTHORS), _utility_set(folder, WORLD_FACTS))


def _check_split(split: str) -> None:
    if split not in RETAIN_OF:
        raise UserError(f"TOFU's forget splits are {', '.join(RETAIN_OF)}, not '{shown(split)}': name one of them")


def _check_folder(folder: Path, split: str) -> None:
    kind = path_kind(folder)
    fix = f"download TOFU's files into it (huggingface-cli download locuslab/TOFU --repo-type dataset --local-dir " \
          f"{shown(folder)})"
    if kind != "a folder":
        what = "no such folder" if kind == "missing" else f"{kind}, not a folder"
        raise UserError(f"{PREFIX}{shown(folder)}: {what}: {fix}")
    for name in needed_files(split):
        if path_kind(folder / name) == "missing":
            raise UserError(f"{PREFIX}{shown(folder)} has no {name} (TOFU's {split} needs it): {fix}")


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) of every row of a TOFU file: JSON lines as distributed ("line 3"), or a JSON array ("row 3")."""
    text = text_of(path, "TOFU file", FIX).replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{shown(path)} is not JSON ({exc.msg} on line {exc.lineno}): {FIX}") from None
        numbered = [(f"row {i}", row) for i, row in enumerate(rows, 1)]  # text starting "[" parses to a list
    else:
        numbered = []
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines: a JSON string may hold U+2028
            if not line.strip():
                continue
            try:
                numbered.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise UserError(f"{shown(path)} line {number} is not JSON ({exc.msg}): {FIX}") from None
    for where, row in numbered:
        if not isinstance(row, dict):
            raise UserError(f"{shown(path)} {where} is not a JSON object: {FIX}")
    if not numbered:
        raise UserError(f"{shown(path)} holds no question: {FIX}")
    return numbered


def _string(path: Path, where: str, row: dict, name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{shown(path)} {where}: '{name}' is missing or not a non-empty string: {FIX}")
    return value


def _perturbed(path: Path, where: str, row: dict) -> tuple[str, ...]:
    value = row.get("perturbed_answer")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise UserError(f"{shown(path)} {where}: 'perturbed_answer' is missing or not a list of non-empty strings: "
                        f"{FIX}")
    return tuple(values)


def _examples(folder: Path, name: str, options: bool = False, perturbed: bool = False,
              stem: str | None = None) -> list[Example]:
    """A file's rows as examples, ids "<stem>-<row from 0>" (stem: the file's, unless given); options: with
    paraphrased_answer and perturbed_answer (both needed); perturbed: with perturbed_answer only."""
    path, stem = folder / name, stem or name.removesuffix(".jsonl").removesuffix(".json")
    out = []
    for i, (where, row) in enumerate(_rows(path)):
        paraphrased = _string(path, where, row, "paraphrased_answer") if options else None
        wrong = _perturbed(path, where, row) if options or perturbed else ()
        out.append(Example(f"{stem}-{i:04d}", _string(path, where, row, "question"),
                           _string(path, where, row, "answer"), paraphrased, wrong))
    return out


def _with_options(examples: list[Example], folder: Path, name: str) -> list[Example]:
    """The examples with the paraphrased and perturbed answers of the _perturbed file that holds their questions,
    row for row (TOFU's _perturbed files repeat their set's rows in order, with the options added)."""
    options = _examples(folder, name, options=True)
    if len(options) != len(examples):
        raise UserError(f"{shown(folder / name)} holds {len(options)} questions but its set holds {len(examples)}: "
                        f"{FIX}")
    for i, (ex, opt) in enumerate(zip(examples, options)):
        if ex.prompt != opt.prompt:
            raise UserError(f"{shown(folder / name)} question {i + 1} is not its set's question {i + 1} (the "
                            f"_perturbed file repeats its set's questions in order): {FIX}")
    return [Example(ex.id, ex.prompt, ex.answer, opt.paraphrased, opt.perturbed) for ex, opt in zip(examples, options)]


def _retain_eval(retain: list[Example], rows: list[Example]) -> tuple[list[Example], list[Example]]:
    """(retain, retain_eval): the retain examples with retain_perturbed's options where it holds their question
    and answer, and retain_perturbed's rows as measured (a matched row as its retain example)."""
    by_content = {ex.content(): i for i, ex in reversed(list(enumerate(retain)))}  # the first of any copies
    retain = list(retain)
    measured = []
    for row in rows:
        i = by_content.get(row.content())
        if i is None:
            measured.append(row)
            continue
        retain[i] = Example(retain[i].id, row.prompt, row.answer, row.paraphrased, row.perturbed)
        measured.append(retain[i])
    return retain, measured


def _holdout(folder: Path, stem: str) -> list[Example]:
    """holdout{N} (or its pre-2025 name holdout{N}.jsonl), with holdout{N}_perturbed's options where that file is
    there; [] where neither is."""
    for name in (f"{stem}.json", f"{stem}.jsonl"):
        if path_kind(folder / name) != "missing":
            examples = _examples(folder, name)
            if path_kind(folder / f"{stem}_perturbed.json") != "missing":
                return _with_options(examples, folder, f"{stem}_perturbed.json")
            return examples
    return []


def _utility_set(folder: Path, name: str) -> list[Example]:
    """Real authors or world facts, from its _perturbed file (ids "real_authors-0042": row 42 of
    real_authors_perturbed.json, the file TOFU measures): TOFU's truth ratio compares the answer itself with the perturbed ones
    (eval_everything.yaml base_answer_key: answer for both sets), so the answer is also the "paraphrased" one."""
    examples = _examples(folder, f"{name}_perturbed.json", perturbed=True, stem=name)
    return [Example(ex.id, ex.prompt, ex.answer, ex.answer, ex.perturbed) for ex in examples]
