"""Errors that map to exit codes: a `BadInput` is exit 2 with one line naming the input and fix;
an `EngineFailed` is exit 1 with its cause and the kept log's path."""

from __future__ import annotations

from pathlib import Path


class BadInput(Exception):
    """The user's input cannot be used; the message names the input and says what to do.

    The CLI prints it as one line and exits with code 2. Raise it before anything is written
    at the output path.
    """


def not_a_file(path: Path) -> str:
    """Why `path`, which should name a file, does not: a folder there, or nothing."""
    return "a folder, not a file" if path.is_dir() else "no such file"


class EngineFailed(RuntimeError):
    """A vLLM engine process that failed or ran out of time: its cause, the log kept, and the
    log's tail (the CLI prints the cause and the log's path; -v the tail too)."""

    def __init__(self, cause: str, log: Path, tail: str):
        super().__init__(f"{cause}\nlog kept at {log}" + (f"; its tail:\n{tail}" if tail else ""))
        self.cause, self.log, self.tail = cause, log, tail


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a CI job cancelled), raised where the stage is so that it
    unwinds as Ctrl-C does: temporary outputs removed, engine process groups stopped."""
