"""Errors that map to exit codes: a `BadInput` is exit 2 with one line naming the input and fix."""


class BadInput(Exception):
    """The user's input cannot be used; the message names the input and says what to do.

    The CLI prints it as one line and exits with code 2. Raise it before anything is written
    at the output path.
    """
