"""YAML loading with line numbers, so every config error names file, line and field."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from cellctl.drivers import CellError
from cellctl.drivers.settings import FieldError
from cellctl.files import NotARegularFile, TooLarge, read_bounded
from cellctl.text import printable

M = TypeVar("M", bound=BaseModel)


MAX_FILE_BYTES = 1 << 20  # a cell config or profile is a few kB; more is not a config
MAX_DEPTH = 32  # our deepest field is 4 levels down
MAX_NODES = 20_000  # counted with repeats, so an alias bomb ("billion laughs") stops here
MAX_INT = 2**53  # larger integers lose precision as floats and mean nothing in a config
MAX_FIELD_CHARS = 120  # of a field path in a message (keys can be long)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the file has no line for it (e.g. a missing section)
    field: str  # dotted path, "" for the document itself
    message: str

    def __str__(self) -> str:
        # one line whatever the file holds: keys and values may carry control characters
        file = printable(self.file)
        where = f"{file}:{self.line}" if self.line else file
        field = printable(self.field)
        if len(field) > MAX_FIELD_CHARS:
            field = field[:MAX_FIELD_CHARS] + "..."
        field = f" {field}:" if field else ""
        return f"{where}:{field} {printable(self.message)}"


class ConfigError(CellError):
    """A config or profile is invalid; ``problems`` holds one entry per error."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_yaml(path: Path) -> Any:
    """Parse one YAML document keeping node positions; any unusable file becomes ConfigError.

    The file is untrusted input: binary, Latin-1, control characters, deep nesting, alias
    bombs, duplicate keys and huge numbers all end as one Problem with the line, never as an
    exception of the parser.
    """
    text = _read_text(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel warns about YAML 1.1 oddities: not errors
            data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError([Problem(str(path), line, "", f"YAML syntax: {problem}")]) from exc
    except RecursionError as exc:
        raise ConfigError([Problem(str(path), 0, "", f"nested deeper than {MAX_DEPTH} levels")]) from exc
    except Exception as exc:  # the parser fails in many ways on hostile input
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = getattr(mark, "line", -1) + 1
        raise ConfigError([Problem(str(path), line, "", f"not valid YAML: {exc}".split("\n")[0])]) from exc
    if data is None:
        raise ConfigError([Problem(str(path), 0, "", "empty file (expected a mapping of fields)")])
    _check_shape(path, data)
    return data


def _read_text(path: Path) -> str:
    try:
        raw = read_bounded(path, MAX_FILE_BYTES)
    except TooLarge:
        raise ConfigError(
            [Problem(str(path), 0, "", f"larger than {MAX_FILE_BYTES} bytes: not a config file")]
        ) from None
    except NotARegularFile as exc:
        message = "is a directory, not a YAML file" if path.is_dir() else str(exc)
        raise ConfigError([Problem(str(path), 0, "", message)]) from exc
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {exc.strerror or exc}")]) from exc
    except ValueError as exc:  # an embedded NUL in the path
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {exc}")]) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [
                Problem(
                    str(path),
                    line,
                    "",
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02X}); save the file as UTF-8 (a binary or Latin-1 file?)",
                )
            ]
        ) from exc


def _check_shape(path: Path, data: Any) -> None:
    """Bound depth and size, refuse numbers no field can hold, turn anchored booleans into
    plain ones (ruamel's ScalarBoolean is an int and would pass for a number)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    nodes = 0
    while stack:
        node, loc = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError([Problem(str(path), 0, "", f"more than {MAX_NODES} values (aliases expanded)")])
        if len(loc) > MAX_DEPTH:
            raise ConfigError(
                [
                    Problem(
                        str(path),
                        _line_of(data, list(loc)),
                        _dotted(loc[:3]) + "...",
                        f"nested deeper than {MAX_DEPTH} levels",
                    )
                ]
            )
        if isinstance(node, (dict, list)):
            items = list(node.items() if isinstance(node, dict) else enumerate(node))
            for key, value in items:
                if isinstance(value, ScalarBoolean):
                    node[key] = bool(value)  # after listing: a merged key may grow the map
                stack.append((value, (*loc, key)))
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(
                [Problem(str(path), _line_of(data, list(loc)), _dotted(loc), f"{node} is not a usable number")]
            )
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INT:
            raise ConfigError(
                [
                    Problem(
                        str(path),
                        _line_of(data, list(loc)),
                        _dotted(loc),
                        f"number with {len(str(abs(node)))} digits is too large",
                    )
                ]
            )


def _dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validate(model: type[M], data: Any, path: Path) -> M:
    """Validate parsed YAML against ``model``; errors carry the line of the offending node.

    Strict: ``true`` is not 1 and ``"5"`` is not 5 (YAML already typed the value).
    """
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise ConfigError([Problem(str(path), 1, "", f"expected a mapping of fields at the top level, got {kind}")])
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ConfigError([_problem(path, data, err) for err in exc.errors()]) from exc


def load(model: type[M], path: Path) -> M:
    return validate(model, read_yaml(path), path)


def _problem(path: Path, data: Any, err: Any) -> Problem:
    loc = [part for part in err["loc"] if not _is_union_tag(part)]
    message = err["msg"]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):  # a check across fields names the one at fault
        loc = [*loc, *cause.field.split(".")]
        return Problem(str(path), _line_of(data, loc), _dotted(loc), cause.message)
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; allowed fields are listed in README)"
    elif err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        shown = repr(err["input"])
        message = f"{message} (got {shown[:80] + '...' if len(shown) > 80 else shown})"
    return Problem(str(path), _line_of(data, loc), _dotted(loc), message)


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the branch name of a union / function validator into loc
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def line_of(data: Any, dotted: str) -> int:
    """Line of a dotted field path in parsed YAML (``model.sha256``), for resolve-time errors."""
    return _line_of(data, [int(p) if p.isdigit() else p for p in dotted.split(".")])


def _line_of(data: Any, loc: list[Any]) -> int:
    """Line of the deepest node of ``loc`` that exists in the document (1-based)."""
    node, line = data, 1
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
                continue
            if isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
                continue
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # a key merged in with `<<:` has no position of its own: keep the parent's
        if isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
            line = max(line, node.lc.line + 1)
        break
    return line
