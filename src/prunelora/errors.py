"""The one exception type that means "the user asked for something wrong", and a parser that raises it."""

import argparse


class UserError(Exception):
    """A mistake in the user's input: the CLI prints its message on one line and exits 2.

    The message names what is wrong and how to fix it. Anything else that escapes is a bug.
    """


class UserErrorParser(argparse.ArgumentParser):
    """argparse whose mistakes become a UserError: one line and exit 2, like every other user mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see '{self.prog} --help')")
