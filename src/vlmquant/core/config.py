"""Stage settings: one dataclass per stage, filled from a TOML recipe, overridden by CLI flags.

Precedence is CLI > recipe > defaults. Each field's metadata carries its help text (and
optional `choices` / `flag`), so the CLI is generated from the dataclass and the flags cannot
drift from the settings they set. A recipe holds one table per stage, named like the CLI
subcommand (`[calib]`, `[quantize]`, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput


def setting(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with CLI help; `choices=[...]`, `flag="--x"`, `short="-x"`, the
    allowed range of a number `low=` / `high=` (inclusive; checked for flags and recipes alike),
    for a list `repeats=True` (a value may appear twice), and `required=True` (a run needs it,
    from a flag or the recipe: marked in --help, checked by `check_required`) optional."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"help": help, **extra}
        )
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def _base_type(tp: Any) -> Any:
    """`Path | None` -> Path; `int` -> int."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


_METAVARS = {Path: "PATH", int: "N", float: "X", str: "TEXT"}


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of `cls`; defaults stay unset so a recipe can fill them."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.metadata.get("cli") is False:
            continue
        tp = _base_type(hints[field.name])
        default = (
            field.default if field.default is not dataclasses.MISSING else field.default_factory()
        )  # type: ignore[misc]
        help_text = field.metadata.get("help", "")
        if field.metadata.get("required"):
            help_text += " (required: this flag or the recipe's key)"
        elif default not in (None, "", [], False):
            help_text += f" (default: {default})"
        names = [_flag(field)] + ([field.metadata["short"]] if "short" in field.metadata else [])
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            "help": help_text,
        }
        if field.metadata.get("positional"):  # required on the command line, no recipe key
            names, kwargs = [field.name], {"type": tp, "help": help_text, "metavar": "DIR"}
            parser.add_argument(*names, **kwargs)
            continue
        if tp is bool:
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if typing.get_origin(tp) is list:  # `--x a b` and `--x a --x b` both collect
            kwargs["nargs"] = "+"
            kwargs["action"] = "extend"
            tp = typing.get_args(tp)[0]
        kwargs["type"] = str if tp is Path else tp  # build() makes the Path (and refuses "")
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        shown = (
            "{" + ",".join(map(str, field.metadata["choices"])) + "}"
            if "choices" in kwargs
            else None
        )
        kwargs["metavar"] = field.metadata.get("metavar") or shown or _METAVARS.get(tp, "VALUE")
        parser.add_argument(*names, **kwargs)


def load_recipe(path: Path, tables: set[str] | None = None) -> dict[str, Any]:
    """Read a TOML recipe; a missing, unreadable or malformed file, or a table that is no
    stage's (`[quantise]`), is bad input."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise BadInput(f"recipe {path}: {what}; pass an existing TOML file to --recipe")
    try:
        # utf-8-sig: a byte-order mark (some Windows editors write one) is harmless
        recipe = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise BadInput(f"recipe {path}: not UTF-8 text; pass a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"recipe {path}: not valid TOML ({e}); fix the file") from None
    unknown = sorted(set(recipe) - tables) if tables is not None else []
    if unknown:
        raise BadInput(
            f"recipe {path}: table [{unknown[0]}] is no stage; use one of "
            f"{', '.join(f'[{t}]' for t in sorted(tables))}"
        )
    for name, table in recipe.items():
        if not isinstance(table, dict):
            kind = "an array of tables [[...]]" if isinstance(table, list) else "a plain key"
            raise BadInput(
                f"recipe {path}: [{name}] is {kind}; write it as one table [{name}] with its "
                "settings under it"
            )
    return recipe


def build(cls: type, recipe: dict[str, Any] | None, cli: dict[str, Any], section: str) -> Any:
    """Merge defaults < recipe[section] < cli into an instance of `cls`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    table = (recipe or {}).get(section, {})
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in names:
            raise BadInput(
                f"recipe [{section}] key {key!r}: unknown setting; "
                f"use one of {', '.join(sorted(names))}"
            )
        values[name] = value
    for key, value in values.items():  # recipe values: the type each setting declares
        _check_recipe_type(section, key, value, hints[key])
    values.update({k: v for k, v in cli.items() if k in names})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in values.items():
        allowed = fields[name].metadata.get("choices")
        items = value if isinstance(value, list) else [value]
        if allowed and value is not None and any(v not in allowed for v in items):
            raise BadInput(
                f"[{section}] {name} = {value!r}: not one of {', '.join(map(str, allowed))}"
            )
        _check_range(fields[name], items)
        if isinstance(value, list) and not fields[name].metadata.get("repeats"):
            _check_distinct(fields[name], value)
        tp = _base_type(hints[name])
        paths = tp is Path or typing.get_args(tp) == (Path,)
        if paths and "" in items:  # Path("") is the working directory
            raise BadInput(f"{_flag(fields[name])} '': an empty path; pass a file or folder")
        # "~/x" from a recipe or a quoted flag: the home folder, as the shell would have it
        if tp is Path and value is not None:
            values[name] = Path(value).expanduser()
        elif typing.get_origin(tp) is list and value is not None:
            items = list(value) if isinstance(value, list | tuple) else [value]  # `x = "a"`
            if typing.get_args(tp) == (Path,):
                items = [Path(v).expanduser() for v in items]
            values[name] = items
    return cls(**values)


def check_required(settings: Any, section: str) -> None:
    """Every `required=True` setting given (by its flag or the recipe's [section] table), else
    bad input naming the first one missing; --print-config shows the settings without this."""
    for field in dataclasses.fields(settings):
        if field.metadata.get("required") and getattr(settings, field.name) in (None, [], ""):
            raise BadInput(
                f"{section}: {_flag(field)} is required ({field.metadata.get('help', '')}); "
                f"pass it, or set `{field.name}` in the recipe's [{section}] table"
            )


def _check_range(field: dataclasses.Field, items: list) -> None:
    low, high = field.metadata.get("low"), field.metadata.get("high")
    for v in items:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if not math.isfinite(v):  # nan passes every comparison; no setting means infinity
            raise BadInput(f"{_flag(field)} {v}: must be a finite number")
        if (low is not None and v < low) or (high is not None and v > high):
            span = (
                f"between {low} and {high}"
                if low is not None and high is not None
                else (f"at least {low}" if low is not None else f"at most {high}")
            )
            raise BadInput(f"{_flag(field)} {v}: must be {span}")


def _check_distinct(field: dataclasses.Field, items: list) -> None:
    """A list setting names each value once (`--modes default default` ran the mode twice);
    `repeats=True` in a field's metadata allows repeats (a pair such as IN OUT)."""
    seen = set()
    for v in items:
        if str(v) in seen:
            shown = " ".join(map(str, items))
            raise BadInput(f"{_flag(field)} {shown}: {v} is given twice; give each value once")
        seen.add(str(v))


def _check_recipe_type(section: str, key: str, value: Any, hint: Any) -> None:
    """A recipe value must have its setting's type (TOML has no `"false"` that means false)."""
    tp = _base_type(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if value is None and optional:
        return
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (str,)
        if item in (str, Path):
            ok, want = isinstance(value, str | list), "a list (or one string)"
            items = value if isinstance(value, list) else []
            ok = ok and all(isinstance(v, str) for v in items)
        else:  # a list of numbers: a list of them, or one
            items = value if isinstance(value, list) else [value]
            ok = all(isinstance(v, item) and not isinstance(v, bool) for v in items)
            want = f"a list of {'integers' if item is int else 'numbers'}"
    elif tp is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif tp is int:
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        want = "a number"
    elif tp in (str, Path):
        ok, want = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise BadInput(f"recipe [{section}] {key} = {value!r}: must be {want}; fix the recipe")


def to_toml(section: str, settings: Any) -> str:
    """A stage's merged settings as the recipe table that would give them (`--print-config`);
    unset (None) settings are written as comments, since TOML has no null."""
    lines = [f"[{section}]"]
    for key, value in to_jsonable(settings).items():
        if value is None:
            lines.append(f"# {key} = (unset)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths and tuples as plain JSON values (for run.json)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj
