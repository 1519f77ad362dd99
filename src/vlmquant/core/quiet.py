"""Quiet by default, loud on request: what libraries print during a stage (ModelOpt's banners
and quant_cfg dump, transformers' load reports and progress bars, Python warnings) goes to the
run's log; `-v` (VLMQUANT_VERBOSE=1) lets it through to the terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

VERBOSE_ENV = "VLMQUANT_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


@contextlib.contextmanager
def library_output(log_path: Path) -> Iterator[None]:
    """Send Python-level stdout, stderr, warnings and transformers' logging to `log_path`
    for the block (unless verbose). Errors still reach the terminal: they propagate out."""
    if verbose():
        yield
        return
    import transformers

    log_path.parent.mkdir(parents=True, exist_ok=True)
    tf_logging = transformers.utils.logging
    level = tf_logging.get_verbosity()
    with (
        open(log_path, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
        warnings.catch_warnings(),
    ):
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: (
            log.write(warnings.formatwarning(message, category, filename, lineno, line))
        )
        tf_logging.set_verbosity_error()  # its handler holds the real stderr
        try:
            yield
        finally:
            tf_logging.set_verbosity(level)


def say(line: str) -> None:
    """One line of the stage's own for the terminal, also from inside `library_output`."""
    print(line, file=sys.__stdout__ or sys.stdout, flush=True)
