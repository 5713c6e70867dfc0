"""The one exception type that means "the user asked for something wrong"."""


class UserError(Exception):
    """A mistake in the user's input: the CLI prints its message on one line and exits 2.

    The message names what is wrong and how to fix it. Anything else that escapes is a bug.
    """
