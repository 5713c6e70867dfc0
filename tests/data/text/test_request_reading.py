"""Reading a causal-LM request and dataset as the user wrote them: ids verbatim, every copy of a forgotten example
forgotten, files that are not regular UTF-8 files refused in one line (never a hang, never a traceback), and the
user's strings echoed escaped."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from prunelora.config.causal_lm import LMDataConfig
from prunelora.data.text.examples import Example, forget_request, read_examples, read_request, split, with_copies
from prunelora.errors import UserError
from tests.helpers import run_cli, within

CFG = LMDataConfig()
SMALL = ["--preset", "smoke", "--no-progress"]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _qa(ids: list[str], contents: list[int] | None = None) -> list[dict]:
    """Rows id -> question/answer number `contents[i]` (default: i): equal numbers are copies of one fact."""
    contents = contents if contents is not None else list(range(len(ids)))
    return [{"id": i, "question": f"Q{c}?", "answer": f"A{c}."} for i, c in zip(ids, contents)]


def _train(tmp_path: Path, ids: list[str], contents: list[int] | None = None):
    return read_examples(_jsonl(tmp_path / "train.jsonl", _qa(ids, contents)), CFG)



def _refused(call, *args) -> str:
    with within(5), pytest.raises(UserError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message, message
    return message


# -- 1: ids are read verbatim ----------------------------------------------------------------------------------------

def test_an_id_holding_a_hash_is_that_id_not_a_shorter_one(tmp_path):
    kind, train = _train(tmp_path, ["doc", "doc#1", "doc#2", "x"])
    request = tmp_path / "r.txt"
    request.write_text("# the docs to forget\n\n   # an indented comment\n  doc#1  \n")
    assert read_request(request, train, kind, CFG) == ["doc#1"]  # today: 'doc', another example
    assert [e.id for e in split(kind, train, ["doc#1"], [], "r").retain] == ["doc", "doc#2", "x"]


# -- 2: every copy of a forgotten example is forgotten ---------------------------------------------------------------

def test_a_fact_held_twice_is_forgotten_twice_and_the_caller_is_told(tmp_path):
    kind, train = _train(tmp_path, ["a", "b", "c", "d"], [0, 1, 0, 2])  # a and c hold the same fact
    by_content = _jsonl(tmp_path / "forget.jsonl", [{"question": "Q0?", "answer": "A0."}])
    ids, notes = forget_request(by_content, train, kind, CFG)
    assert sorted(ids) == ["a", "c"]
    assert len(notes) == 1 and "'c' (a copy of 'a')" in notes[0] and "forgotten too" in notes[0], notes
    retained = split(kind, train, ids, [], "forget.jsonl").retain
    assert [e.id for e in retained] == ["b", "d"] and all(e.content() != ("Q0?", "A0.") for e in retained)
    assert sorted(read_request(by_content, train, kind, CFG)) == ["a", "c"]  # the old function forgets them too
    # by id: the copy goes too, for the same reason
    listed = tmp_path / "ids.txt"
    listed.write_text("c\n")
    ids, notes = forget_request(listed, train, kind, CFG)
    assert ids == ["c", "a"] and "'a' (a copy of 'c')" in notes[0]
    # a request naming every copy itself adds nothing and says nothing
    listed.write_text("a\nc\n")
    assert forget_request(listed, train, kind, CFG) == (["a", "c"], [])


def test_copies_that_complete_the_training_set_leave_nothing_to_keep(tmp_path):
    kind, train = _train(tmp_path, ["a", "b", "c"], [0, 1, 0])
    listed = tmp_path / "ids.txt"
    listed.write_text("a\nb\n")
    message = _refused(read_request, listed, train, kind, CFG)
    assert message == (f"--forget {listed} names every training example (1 of them as copies of the question and "
                       "answer of examples it names): nothing would be left to keep")
    # the Python API's ids go through with_copies and split
    assert with_copies(train, ["b"], kind, "forget") == (["b"], [])
    assert "names every training example" in _refused(with_copies, train, ["a", "b"], kind, "forget")
    assert _refused(split, kind, train, ["a", "b", "c"], [], "3 named examples") == \
        "3 named examples forgets every training example: nothing would be left to keep"


# -- 4: the duplicate check is linear --------------------------------------------------------------------------------

def test_two_hundred_thousand_ids_are_read_and_a_late_repeat_is_found(tmp_path):
    count = 200_000
    train = [Example(f"e{i}", f"Q{i}?", f"A{i}.") for i in range(count + 1)]
    listed = tmp_path / "ids.txt"
    listed.write_text("".join(f"e{i}\n" for i in range(count)))
    ids = read_request(listed, train, "qa", CFG)  # with ids.count per id this took minutes
    assert ids == [f"e{i}" for i in range(count)]
    listed.write_text("".join(f"e{i}\n" for i in range(count)) + "e199998\n")
    with pytest.raises(UserError) as caught:
        read_request(listed, train, "qa", CFG)
    assert str(caught.value) == f"--forget {listed} names 'e199998' more than once: list each example once"


# -- 4, 5: a request or dataset that is not a regular UTF-8 file -----------------------------------------------------

@pytest.mark.parametrize("name", ["r.txt", "r.jsonl"])
def test_a_fifo_request_is_refused_without_blocking(tmp_path, name):
    kind, train = _train(tmp_path, ["a", "b"])
    fifo = tmp_path / name
    os.mkfifo(fifo)
    assert _refused(read_request, fifo, train, kind, CFG) == \
        f"--forget {fifo} is a named pipe (FIFO), not a file: " + \
        ("give a UTF-8 .jsonl of question/answer pairs, conversations or plain text, one JSON object a line"
         if name.endswith(".jsonl") else "give a UTF-8 text file of ids, one a line, or a .jsonl of examples")


def test_a_fifo_a_folder_or_a_device_as_the_dataset_is_refused(tmp_path):
    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    fix = "give a UTF-8 .jsonl of question/answer pairs, conversations or plain text, one JSON object a line"
    assert _refused(read_examples, fifo, CFG) == f"data file {fifo} is a named pipe (FIFO), not a file: {fix}"
    assert _refused(read_examples, tmp_path, CFG) == f"data file {tmp_path} is a folder, not a file: {fix}"
    assert _refused(read_examples, "/dev/zero", CFG) == f"data file /dev/zero is a device, not a file: {fix}"
    assert _refused(read_examples, tmp_path / "none.jsonl", CFG) == \
        f"data file {tmp_path / 'none.jsonl'}: no such file ({fix})"


def test_non_utf8_data_and_binary_requests_are_refused_in_one_line(tmp_path):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(json.dumps({"question": "Q?", "answer": "A."}).encode() + b"\n" +
                     '{"question": "caf\u00e9?", "answer": "A."}\n'.encode("latin-1"))
    assert _refused(read_examples, data, CFG) == (
        f"cannot read data file {data} (not UTF-8 text: byte 0xe9 on line 2): give a UTF-8 .jsonl of question/answer "
        "pairs, conversations or plain text, one JSON object a line")
    kind, train = _train(tmp_path, ["a", "b"])
    binary = tmp_path / "r.bin"
    binary.write_bytes(bytes(range(256)))
    fix = "give a UTF-8 text file of ids, one a line, or a .jsonl of examples"
    assert _refused(read_request, binary, train, kind, CFG) == \
        f"cannot read --forget {binary} (not UTF-8 text: byte 0x80 on line 2): {fix}"
    nul = tmp_path / "r.txt"
    nul.write_bytes(b"a\nb\x00\n")  # valid UTF-8, but a NUL byte says binary
    assert _refused(read_request, nul, train, kind, CFG) == \
        f"cannot read --forget {nul} (a NUL byte on line 2: a binary file, not text): {fix}"
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffa\n".encode())  # a byte-order mark is not part of the first id
    assert read_request(bom, train, kind, CFG) == ["a"]


# -- 6: the user's strings are echoed escaped ------------------------------------------------------------------------

def test_ids_and_paths_in_errors_are_escaped(tmp_path):
    kind, train = _train(tmp_path, ["a", "b\x1b[2Jc"])
    listed = tmp_path / "r.txt"
    listed.write_text("\x1b[31mred\n")
    assert _refused(read_request, listed, train, kind, CFG) == (
        f"--forget {listed}: 1 ids match no training example (first: '\\x1b[31mred'); an id here looks like 'a'")
    listed.write_text("b\x1b[2Jc\nb\x1b[2Jc\n")
    assert "names 'b\\x1b[2Jc' more than once" in _refused(read_request, listed, train, kind, CFG)
    odd = tmp_path / "a\nb\x07.txt"
    assert _refused(read_request, odd, train, kind, CFG).startswith(f"--forget {tmp_path}/a\\nb\\x07.txt: no such file")
    twice = _jsonl(tmp_path / "twice.jsonl", _qa(["x\ty", "x\ty"]))
    assert "the id 'x\\ty' appears twice" in _refused(read_examples, twice, CFG)


# -- the command line: one line, exit 2, nothing written -------------------------------------------------------------



def test_the_command_line_refuses_each_bad_file_in_one_line(tmp_path, capsys, user_model, people):
    data = _jsonl(tmp_path / "train.jsonl", people[0])
    base = ["unlearn", "--task", "causal-lm", "--model", f"hf:{user_model}", *SMALL]
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"question": "caf\xe9?", "answer": "A."}\n')
    everything = tmp_path / "all.txt"
    everything.write_text("".join(row["id"] + "\n" for row in people[0]))
    cases = [
        (["--dataset", data, "--forget", fifo], f"--forget {fifo} is a named pipe (FIFO), not a file"),
        (["--dataset", data, "--forget", binary], f"cannot read --forget {binary} (not UTF-8 text: byte 0xff on "
                                                  "line 1)"),
        (["--dataset", latin, "--forget", binary], f"cannot read data file {latin} (not UTF-8 text: byte 0xe9 on "
                                                   "line 1)"),
        (["--dataset", data, "--forget", everything], f"--forget {everything} names every training example"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        with within(60):
            code, stdout, err = run_cli(base + extra + ["--out", out], capsys)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prunelora: error: ") and message in lines[0], err
        assert "Traceback" not in err + stdout and not out.exists()
