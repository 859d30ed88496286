"""YAML loading with line numbers, so every config error names file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from cellctl.drivers import CellError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the file has no line for it (e.g. a missing section)
    field: str  # dotted path, "" for the document itself
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(CellError):
    """A config or profile is invalid; ``problems`` holds one entry per error."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_yaml(path: Path) -> Any:
    """Parse one YAML document keeping node positions; syntax errors become ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {exc.strerror}")]) from exc
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError([Problem(str(path), line, "", f"YAML syntax: {exc.problem}")]) from exc


def validate(model: type[M], data: Any, path: Path) -> M:
    """Validate parsed YAML against ``model``; errors carry the line of the offending node."""
    if not isinstance(data, dict):
        raise ConfigError([Problem(str(path), 1, "", "expected a mapping of fields at the top level")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(path, data, err) for err in exc.errors()]) from exc


def load(model: type[M], path: Path) -> M:
    return validate(model, read_yaml(path), path)


def _problem(path: Path, data: Any, err: Any) -> Problem:
    loc = [part for part in err["loc"] if not _is_union_tag(part)]
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; allowed fields are listed in README)"
    elif err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message = f"{message} (got {err['input']!r})"
    return Problem(str(path), _line_of(data, loc), ".".join(str(p) for p in loc), message)


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
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            if isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
                line = max(line, node.lc.line + 1)
            break
    return line
