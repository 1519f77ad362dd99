"""Typed results: a stage's JSON result is a dataclass with a schema name and version.

`Result` subclasses declare `KIND` and `VERSION` and their fields with ordinary annotations
(str, int, float, bool, None, `X | None`, list[X], dict[str, X], Literal, nested dataclasses,
Any for what a result passes through unread, such as a run's config). `parse` checks a JSON value
against them: every required field present, no unknown key, every value of its declared type.
It is the one check between JSON and the renderers, used when a stage writes its result (a
shape the stage did not declare is a bug, raised as TypeError) and when a result is read (a
file from another tool, another version or a hand edit is bad input: exit 2, naming the file
and the field).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

from vlmquant.core.errors import BadInput, not_a_file

SCHEMA_KEY = "schema"
R = TypeVar("R", bound="Result")
T = TypeVar("T")


class ShapeError(ValueError):
    """A JSON value that is not of the declared shape; `where` is the path to it."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}" if where else problem)


def _name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, "null" if tp is type(None) else str(tp).replace("typing.", "")
    )


def _mismatch(where: str, tp: Any, value: Any) -> str:
    return str(ShapeError(where, f"expected {_name(tp)}, found {value!r:.60}"))


def _convert(tp: Any, value: Any, where: str) -> Any:
    """`value` (parsed JSON) as type `tp`, or ShapeError naming `where`."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        deeper = None  # an object or list that one option nearly fits: say where it does not
        for option in args:
            try:
                return _convert(option, value, where)
            except ShapeError as e:
                if isinstance(value, dict | list) and str(e) != _mismatch(where, option, value):
                    deeper = e
        if deeper is not None:
            raise deeper
        names = " or ".join(_name(a) for a in args)
        raise ShapeError(where, f"expected {names}, found {value!r:.60}")
    if origin is Literal:
        if value not in args:
            raise ShapeError(where, f"expected one of {list(args)}, found {value!r:.60}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ShapeError(where, f"expected a list, found {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ShapeError(where, f"expected an object, found {type(value).__name__}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _object(tp, value, where)
    if tp is type(None):
        if value is not None:
            raise ShapeError(where, f"expected null, found {value!r:.60}")
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ShapeError(where, f"expected {_name(tp)}, found {value!r:.60}")
    return value


def _object(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ShapeError(where, f"expected an object, found {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields) - {SCHEMA_KEY})
    if unknown:
        raise ShapeError(where, f"unexpected key {unknown[0]!r}")
    kwargs = {}
    for name, f in fields.items():
        at = f"{where}.{name}" if where else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], at)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ShapeError(at, "missing")
    return cls(**kwargs)


def plain(obj: Any) -> Any:
    """A parsed result as JSON values again (dataclasses as objects, in field order; an
    optional field left at its default None is left out, as a reader takes it)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.default is None and getattr(obj, f.name) is None)
        }
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


class Result:
    """Base of a typed result; subclasses are dataclasses that set KIND, VERSION and WRITER (the
    command that writes one, named in the fix when a file cannot be read)."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int]
    WRITER: ClassVar[str]

    @classmethod
    def schema(cls) -> str:
        return f"vlmquant.{cls.KIND}/{cls.VERSION}"

    @classmethod
    def parse(cls: type[R], data: Any, where: str = "") -> R:
        """`data` as this result: its schema tag (when present) must be this one."""
        if isinstance(data, dict) and data.get(SCHEMA_KEY, cls.schema()) != cls.schema():
            raise ShapeError(where, f"schema {data[SCHEMA_KEY]!r}, expected {cls.schema()!r}")
        return _object(cls, data, where)

    @classmethod
    def build(cls: type[R], data: dict[str, Any]) -> R:
        """What a stage is about to write, checked: a shape it did not declare is a bug."""
        try:
            return cls.parse(json.loads(json.dumps(plain(data))))
        except ShapeError as e:
            raise TypeError(f"{cls.__name__} being written: {e}") from None

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        """The result in `path`; anything else (no file, not JSON, no or another schema tag,
        another shape) is bad input naming the file and the stage that writes a good one."""
        fix = f"write it again with `{cls.WRITER}`"
        if not path.is_file():
            raise BadInput(f"{path}: {not_a_file(path)}; {fix}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"{path}: not JSON ({e}); {fix}") from None
        return cls.checked(data, path)

    @classmethod
    def checked(cls: type[R], data: Any, path: Path) -> R:
        """`data`, already read from `path`, as this result; bad input as `read` words it."""
        fix = f"write it again with `{cls.WRITER}`"
        if not isinstance(data, dict) or data.get(SCHEMA_KEY) != cls.schema():
            found = data.get(SCHEMA_KEY) if isinstance(data, dict) else type(data).__name__
            raise BadInput(f"{path}: not a {cls.schema()} result (schema {found!r}); {fix}")
        try:
            return cls.parse(data)
        except ShapeError as e:
            raise BadInput(f"{path}: {e}; {fix}") from None

    @classmethod
    def dumps(cls, data: dict[str, Any]) -> str:
        """`data` checked as this result and as the JSON text a stage writes."""
        return cls.build(data).text()

    def to_json(self) -> dict[str, Any]:
        return {SCHEMA_KEY: self.schema(), **plain(self)}

    def text(self) -> str:
        """The JSON text of this result, as every stage writes one."""
        return json.dumps(self.to_json(), indent=2) + "\n"


def read_rows(cls: type[T], path: Path, writer: str) -> list[T]:
    """A JSON-lines file of `cls` rows (a dataclass): bad input naming the file and line when a
    row is not one, and `writer`, the command that writes a good one."""
    fix = f"write it again with `{writer}`"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: unreadable ({e}); {fix}") from None
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            rows.append(_object(cls, json.loads(line), f"line {i}"))
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}: line {i} is not JSON ({e}); {fix}") from None
        except ShapeError as e:
            raise BadInput(f"{path}: {e}; {fix}") from None
    return rows
