"""Sample ids: the training samples a request names, found by the ids a request file lists.

An id is what RawDataset.train_ids holds (data/raw.py): an image folder's file path below the
dataset folder, with forward slashes (train/cat/0001.png; a request may also give it below the split
folder, cat/0001.png, or as a bare file name, 0001.png, where that is unique among the training
files); the row index (0-based) of an .npz or a built-in dataset; a datasets folder's --id-column
value, compared as a string, or its row index.

A request file holds one id a line, or is a .csv with a header row (the column `id` where it has one,
else the first). The rule for a file of ids is the causal-LM task's too (data/text/examples.py): blank
lines are skipped, a line whose first non-blank character is `#` is a comment, and every other line is
one id, verbatim but for the whitespace around it (`cat#1.png` is the id `cat#1.png`). A request file
must be a regular UTF-8 file without NUL bytes (a FIFO, a folder or a device is refused before it is
opened). Every mistake in a request is a one-line UserError, with the user's ids and paths shown
escaped (errors.shown), raised right after the data is loaded and before anything is written.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, not_utf8, regular_file, shown
from .load import load_dataset
from .raw import RawDataset, first_repeat
from .splits import ImageSet, describe_class, gather

SHOWN = 3  # unmatched ids shown in an error


@dataclass(frozen=True)
class Named:
    """The training samples one request names: where they are in the raw training set, and where it came from."""

    source: str  # the request file as given ("the ids given" for a list)
    positions: tuple[int, ...]  # ascending positions in RawDataset.train_ids

    def describe(self) -> str:
        """'312 named samples (request.txt)': what a results row says was forgotten."""
        count = len(self.positions)
        return f"{count} named sample{'' if count == 1 else 's'} ({Path(self.source).name})"


def read_request(path: str | Path) -> list[str]:
    """The ids a request file lists, in its order; a file that is missing, unreadable, empty or lists an id
    twice is a UserError."""
    file = Path(path).expanduser()
    fix = "give a UTF-8 text file with one sample id a line, or a .csv with an id column"
    regular_file(file, "request file", fix)  # before opening: a FIFO without a writer would block for ever
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UserError(f"request file not found: {shown(file)} (give a text file with one sample id a line, or a "
                        ".csv with an id column)") from None
    except OSError as exc:
        raise UserError(f"cannot read request file {shown(file)} ({exc.strerror or type(exc).__name__}): {fix}") \
            from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read request file {shown(file)} ({not_utf8(exc)}): {fix}") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise UserError(f"cannot read request file {shown(file)} (a NUL byte on line {line}: a binary file, not "
                        f"text): {fix}")
    ids = _csv_ids(text, file) if file.suffix.lower() == ".csv" else \
        [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not ids:
        raise UserError(f"request file {shown(file)} names no sample: list the ids to forget, one a line")
    return ids


def _csv_ids(text: str, file: Path) -> list[str]:
    """The `id` column of a .csv with a header row (else its first column)."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise UserError(f"request file {shown(file)} is not a readable .csv ({shown(exc)})") from None
    if not rows:
        return []
    header = [cell.strip() for cell in rows[0]]
    column = header.index("id") if "id" in header else 0
    ids = []
    for number, row in enumerate(rows[1:], start=2):
        value = row[column].strip() if column < len(row) else ""
        if not value:
            raise UserError(f"row {number} of {shown(file)} has no value in its '{shown(header[column])}' column: "
                            "give every row an id")
        ids.append(value)
    return ids


def id_hint(raw: RawDataset) -> str:
    """What an id of this dataset looks like, for error messages."""
    first = raw.train_ids[0] if raw.train_ids else "0"
    if raw.id_kind == "path":
        parts = first.split("/")
        return (f"file paths below the dataset folder such as '{shown(first)}' (or '{shown('/'.join(parts[-2:]))}', "
                f"or '{shown(parts[-1])}' where that file name is unique)")
    if raw.id_kind == "column":
        return f"the values of its '{shown(raw.id_column)}' column, such as '{shown(first)}'"
    return f"training row indices, 0 to {len(raw.train_ids) - 1}"


class IdIndex:
    """The training set's ids, looked up the ways a request may give them."""

    def __init__(self, raw: RawDataset):
        if len(raw.train_ids) != len(raw.train_labels):
            raise UserError(f"{shown(raw.name)} has {len(raw.train_labels)} training images but {len(raw.train_ids)} "
                            "ids: give one id per training image (RawDataset.train_ids)")
        self.raw, self.paths = raw, raw.id_kind == "path"
        self.exact = {sample: i for i, sample in enumerate(raw.train_ids)}
        self.short: dict[str, list[int]] = {}  # a path below the split folder, and a bare file name -> positions
        if self.paths:
            for i, sample in enumerate(raw.train_ids):
                parts = sample.split("/")
                for alias in dict.fromkeys(("/".join(parts[-2:]), parts[-1])):
                    self.short.setdefault(alias, []).append(i)

    def key(self, sample: str) -> str:
        """An id as the index holds it (a path with forward slashes, without a leading ./)."""
        return sample.replace("\\", "/").removeprefix("./") if self.paths else sample

    def find(self, sample: str, where: str) -> int | None:
        """The position the id names, or None where it names none; one that names several is a UserError."""
        key = self.key(sample)
        if key in self.exact:
            return self.exact[key]
        found = self.short.get(key, [])
        if len(found) > 1:
            a, b = (self.raw.train_ids[i] for i in found[:2])
            a, b = shown(a), shown(b)
            raise UserError(f"id '{shown(sample)}' in {shown(where)} is the file name of {len(found)} training files "
                            f"({a}, {b}{', ...' if len(found) > 2 else ''}): give its path below the folder, such as "
                            f"{a}")
        return found[0] if found else None

    def positions(self, ids: list[str], where: str) -> np.ndarray:
        """Where the ids' samples are (ascending); an id listed twice, two ids naming one sample, and ids that
        match nothing (how many, the first few, and what an id looks like here) are UserErrors."""
        twice = first_repeat(ids)
        if twice is not None:
            raise UserError(f"{shown(where)} lists id '{shown(twice)}' twice: each sample is forgotten once (remove "
                            "the repeat)")
        found: dict[int, str] = {}
        missing = []
        for sample in ids:
            at = self.find(sample, where)
            if at is None:
                missing.append(sample)
            elif at in found:
                raise UserError(f"'{shown(found[at])}' and '{shown(sample)}' in {shown(where)} both name "
                                f"{shown(self.raw.train_ids[at])}: each sample is forgotten once (remove one)")
            else:
                found[at] = sample
        if missing:
            listed = ", ".join(f"'{shown(m)}'" for m in missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
            what = "id matches" if len(missing) == 1 else "ids match"
            raise UserError(f"{len(missing)} {what} no training sample of {shown(self.raw.name)} in {shown(where)} "
                            f"({listed}); its ids are {id_hint(self.raw)}")
        return np.array(sorted(found), dtype=np.int64)


def named_samples(index: IdIndex, source: str | Path) -> Named:
    """The samples request file `source` names."""
    return Named(str(source), tuple(int(p) for p in index.positions(read_request(source), str(source))))


def check_kept(raw: RawDataset, positions: np.ndarray, train_per_class: int | None, holdout_per_class: int | None,
               allow_empty_class: bool, where: str) -> None:
    """Every class the request names samples of keeps a training sample (else the model cannot keep the class),
    counted in the training subset (splits.train_positions: the named samples, then the seeded draw up to
    train_per_class, after the holdout), unless allow_empty_class; and, allowed or not, some training sample is
    kept (an empty retain set leaves no data to train, tune or measure the kept classes on)."""
    if not len(positions):
        return
    k = raw.num_classes
    counts = np.bincount(raw.train_labels, minlength=k)
    named = np.bincount(raw.train_labels[positions], minlength=k)
    others = counts - named
    if holdout_per_class:
        others = others - np.minimum(others, holdout_per_class)
    if train_per_class is not None:
        others = np.minimum(others, np.maximum(train_per_class - named, 0))
    if not others.sum():
        why = f"it names all {len(positions)} training samples" if len(positions) == counts.sum() else \
            f"it names {len(positions)} of the {counts.sum()} training samples and --train-per-class / " \
            "--holdout-per-class keep none of the rest"
        raise UserError(f"{shown(where)} leaves no training sample to keep ({why}): nothing would be left to train "
                        "on; name fewer samples")
    if allow_empty_class:
        return
    emptied = [c for c in range(k) if named[c] and not others[c]]
    if not emptied:
        return
    c = emptied[0]
    if named[c] == counts[c]:
        why = "it names its only training sample" if counts[c] == 1 else \
            f"it names all {counts[c]} of its training samples"
    elif train_per_class is not None and named[c] >= train_per_class:
        why = f"it names {named[c]} of its samples and --train-per-class {train_per_class} keeps no more"
    else:
        why = f"it names {named[c]} of its {counts[c]} training samples and --holdout-per-class holds out the rest"
    raise UserError(f"{shown(where)} leaves {shown(describe_class(raw.class_names, c))} no training sample to keep "
                    f"({why}): the model could not keep that class; name fewer of its samples, or give "
                    "--allow-empty-class")


def split_by_ids(data: RawDataset | str | Path, ids: Iterable[str | int] | str | Path, id_column: str | None = None,
                 allow_empty_class: bool = False) -> tuple[ImageSet, ImageSet]:
    """(retain, forget): the whole training split without, and with only, the samples `ids` names, in dataset
    order, on the CPU.

    data: a RawDataset, or a path (an image folder, an .npz, a datasets folder) or a built-in dataset's name.
    ids: the ids (a list), or the path of a request file. id_column: a datasets folder's id column. Every
    check of `--forget` applies (unknown, repeated or ambiguous ids; a class left with no sample to keep
    unless allow_empty_class).
    """
    if isinstance(data, RawDataset):
        if id_column is not None:
            raise UserError("id_column names the column a datasets folder's ids are read from; a RawDataset's ids "
                            "are its train_ids already (pass the folder's path instead)")
        raw = data
    else:
        raw = load_dataset(str(data), id_column=id_column)
    index = IdIndex(raw)
    if isinstance(ids, (str, Path)):
        named = named_samples(index, ids)
    else:
        listed = [str(i).strip() for i in ids]
        if not listed:
            raise UserError("split_by_ids: no id given: list the ids of the samples to forget")
        named = Named("the ids given", tuple(int(p) for p in index.positions(listed, "the ids given")))
    positions = np.array(named.positions, dtype=np.int64)
    check_kept(raw, positions, None, None, allow_empty_class, named.source)
    forget = np.zeros(len(raw.train_labels), dtype=bool)
    forget[positions] = True
    every = np.arange(len(raw.train_labels))
    train = ImageSet(gather(raw.train_images, every, "cpu"), torch.from_numpy(raw.train_labels))
    return train.subset(~forget), train.subset(forget)
