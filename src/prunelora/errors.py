"""The one exception type that means "the user asked for something wrong", a parser that raises it, and the checks
every reader of the user's files shares (a path must be a regular file; a user's string is shown escaped)."""

import argparse
import os
import stat


class UserError(Exception):
    """A mistake in the user's input: the CLI prints its message on one line and exits 2.

    The message names what is wrong and how to fix it. Anything else that escapes is a bug.
    """


class UserErrorParser(argparse.ArgumentParser):
    """argparse whose mistakes become a UserError: one line and exit 2, like every other user mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see '{self.prog} --help')")



_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: object) -> str:
    """A user's string (an id, a path, a field value) as an error may echo it: control and other unprintable
    characters escaped (ESC as \\x1b, a newline as \\n), so that a message stays one line and cannot drive the
    terminal. Printable text, non-ASCII letters included, is kept as it is."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else _escaped(c) for c in text)


def path_kind(path: str | os.PathLike) -> str:
    """What a path the user named is, found with os.stat so that nothing is opened (opening a FIFO that has no
    writer blocks for ever): 'file' (a regular file, or a link to one), 'missing', 'a folder', 'a named pipe
    (FIFO)', 'a device', 'a socket', or 'unreadable: <reason>'."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except (OSError, ValueError) as exc:  # a parent folder without permission; a NUL byte in the path
        return f"unreadable: {getattr(exc, 'strerror', None) or exc}"
    kinds = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def regular_file(path: str | os.PathLike, what: str, fix: str) -> None:
    """A UserError unless `path` is a regular file or missing (the caller says what a missing one should be):
    '<what> <path> is a named pipe (FIFO), not a file: <fix>'. Checked before the file is opened."""
    kind = path_kind(path)
    if kind.startswith("unreadable: "):
        raise UserError(f"cannot read {what + ' ' if what else ''}{shown(path)} ({kind.removeprefix('unreadable: ')})"
                        f": {fix}")
    if kind not in ("file", "missing"):
        raise UserError(f"{what + ' ' if what else ''}{shown(path)} is {kind}, not a file: {fix}")


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Why a user's file (decoded whole) is not text, for 'cannot read <file> (<why>): give a UTF-8 ...'."""
    line = bytes(exc.object).count(b"\n", 0, exc.start) + 1
    return f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line {line}"


class UnlearningWarning(UserWarning):
    """What an unlearning result must say to its caller: the budget ended with the forget set still recognised,
    or the request forgot more than it named (copies of its examples)."""


class SettingWarning(UserWarning):
    """A setting that cannot act where the run is: it is kept in the config, the run goes on without it, and the
    CLI prints it as one line."""
