"""README is the front door: what users touch must be in it. These checks fail when a new
fault, command, config field or refusal reason lands without its line in README."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from cellctl.cli import COMMANDS
from cellctl.config import CellConfig
from cellctl.link.protocol import Refusal
from cellctl.sim.faults import FAULT_NAMES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        inner = [a for a in typing.get_args(kind) if a is not type(None)]  # `Model | None`: an optional section
        if len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            out.append(f"{prefix}{name}")
            kind = inner[0]
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += _fields(kind, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_every_fault_name_is_documented():
    missing = [name for name in FAULT_NAMES if f"`{name}`" not in README]
    assert not missing, missing


def test_every_command_has_its_section():
    headers = set(re.findall(r"^### cellctl (\w+)", README, flags=re.MULTILINE))
    assert set(COMMANDS) <= headers, set(COMMANDS) - headers


def test_every_cell_config_field_is_in_the_field_table():
    # the device entries share one row per kind of option (url, encoder counts)
    missing = [f for f in _fields(CellConfig) if f != "schema_version" and f"`{f}`" not in README]
    assert not missing, missing


def test_every_refusal_reason_is_documented():
    missing = [r.value for r in Refusal if f"`{r.value}`" not in README]
    assert not missing, missing
