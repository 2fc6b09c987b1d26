"""YAML loading that remembers where every value came from, and errors that point there.

Config files and rule files are code the user keeps in git; an error must read like a compiler's:
``config.yaml:12:5: plex.servers[0].url: not a valid URL``. :func:`load` returns the plain data plus a
map from each key path to its line and column; :func:`validation_errors` turns a pydantic
``ValidationError`` into :class:`SourceError` lines using that map, with "did you mean" hints for
unknown keys.

``${VAR}`` and ``${VAR:-default}`` in string values are expanded from the environment while loading
(``$$`` is a literal ``$``); an unset variable without a default is an error naming it and its line.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml

Loc = tuple[str | int, ...]
_ENV_SOURCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^}\n]*)?)\}")
# ``${VAR}`` is not valid inside YAML flow mappings (``{token: ${X}}``), so before parsing each reference is
# rewritten to private-use characters of the same length (columns stay right), and expanded after parsing.
_OPEN, _CLOSE = "\ue000\ue001", "\ue002"
_ENV = re.compile(r"\$\$|\ue000\ue001([A-Za-z_][A-Za-z0-9_]*)(?::-([^\ue002]*))?\ue002")


@dataclass(frozen=True, slots=True)
class SourceError:
    """One problem at one place in one file."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SourceErrors(Exception):
    """Everything wrong with a file, each with file:line:column. ``str()`` is ready to print."""

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class Marks:
    """Where each key path starts in the file: ``key`` is the key's own position, ``value`` its value's."""

    file: str
    key: dict[Loc, tuple[int, int]]
    value: dict[Loc, tuple[int, int]]

    def find(self, loc: Loc, prefer_key: bool = False) -> tuple[int, int]:
        """Position of ``loc`` or of its nearest known ancestor (1-based line, column)."""
        loc = tuple(loc)
        while True:
            table = (self.key, self.value) if prefer_key else (self.value, self.key)
            for t in table:
                if loc in t:
                    return t[loc]
            if not loc:
                return (1, 1)
            loc = loc[:-1]


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _expand_env(text: str, line: int, col: int, file: str, errors: list[SourceError], path: Loc) -> str:
    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            errors.append(
                SourceError(
                    file, line, col, format_loc(path),
                    f"environment variable {name} is not set (set it, or write ${{{name}:-default}})",
                )
            )  # fmt: skip
            return ""
        return value

    return _ENV.sub(repl, text)


def load(path: str | Path, text: str | None = None) -> tuple[Any, Marks]:
    """Parse YAML from ``path`` (or ``text``), expand ``${VAR}``, and keep every value's position."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SourceErrors([SourceError(file, 1, 1, "", "file not found")]) from None
        except OSError as exc:
            raise SourceErrors([SourceError(file, 1, 1, "", f"cannot read file: {exc.strerror}")]) from None
    text = _ENV_SOURCE.sub(lambda m: f"{_OPEN}{m.group(1)}{_CLOSE}", text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceErrors([SourceError(file, line, col, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise SourceErrors([SourceError(file, 1, 1, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    marks = Marks(file, {}, {})
    errors: list[SourceError] = []
    if node is None:
        return None, marks

    def build(n: yaml.Node, loc: Loc) -> Any:
        marks.value[loc] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                child = (*loc, key)
                if key in out:
                    errors.append(
                        SourceError(
                            file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            format_loc(child), "duplicate key (the later value would silently win)",
                        )
                    )  # fmt: skip
                marks.key[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = build(value_node, child)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*loc, i)) for i, item in enumerate(n.value)]
        value = loader.construct_object(n, deep=True)
        if isinstance(value, str) and ("$" in value or _OPEN in value):
            line, col = marks.value[loc]
            value = _expand_env(value, line, col, file, errors, loc)
        return value

    data = build(node, ())
    if errors:
        raise SourceErrors(errors)
    return data, marks


# --- pydantic errors -> file:line:column ------------------------------------------------------------


def _model_at(model: Any, loc: Loc) -> Any:
    """The pydantic model class that owns the last key of ``loc`` (to suggest valid keys)."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, Mapping):
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, pydantic.BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/list/Annotated/Union layers down to a model class where there is one."""
    for _ in range(6):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated or origin in (list, tuple, set):
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]
            if not models:
                return tp
            tp = models[0]
        else:
            return tp
    return tp


def _friendly(err: Any) -> str:
    kind = err["type"]
    msg: str = err["msg"]
    if kind == "missing":
        return "required key is missing"
    if kind.startswith("url_") or kind == "url_parsing":
        return f"not a valid URL ({msg.lower()})"
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, ") :]
    received = err.get("input")
    if kind in {"int_parsing", "int_type", "float_parsing", "float_type", "bool_parsing", "bool_type",
                "string_type", "list_type", "dict_type", "model_type"}:  # fmt: skip
        return f"{msg[0].lower()}{msg[1:]} (got {received!r})"
    return msg[0].lower() + msg[1:]


def validation_errors(exc: pydantic.ValidationError, marks: Marks, model: Any, root: Loc = ()) -> SourceErrors:
    """Turn a pydantic error into file:line:column errors; unknown keys get the closest valid key."""
    out: list[SourceError] = []
    for err in exc.errors():
        loc = (*root, *_clean_loc(err["loc"]))
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, _clean_loc(err["loc"])[:-1])
            choices = list(owner.model_fields) if owner else []
            key = str(loc[-1])
            close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else (
                f"; valid keys here: {', '.join(choices)}" if choices else ""
            )  # fmt: skip
            line, col = marks.find(loc, prefer_key=True)
            out.append(SourceError(marks.file, line, col, format_loc(loc), f"unknown key{hint}"))
            continue
        line, col = marks.find(loc, prefer_key=err["type"] == "missing")
        out.append(SourceError(marks.file, line, col, format_loc(loc), _friendly(err)))
    out.sort(key=lambda e: (e.line, e.column))
    return SourceErrors(out)


def _clean_loc(loc: tuple[Any, ...]) -> Loc:
    """Drop pydantic's validator markers (``function-after[...]``) from a location."""
    return tuple(p for p in loc if isinstance(p, int) or not ("[" in p and p.endswith("]")))
