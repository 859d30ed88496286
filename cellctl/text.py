"""Strings that travel to the robot or into the records: bounded, printable, no bidi tricks.

A part id, a profile name or a cell id ends up in a log line, an operator's screen, a SQLite
row and a ZeroMQ frame. A control character there splits a log line or moves a terminal's
cursor; a bidi control (U+202E ...) makes ``PASS`` read as something else on a screen. Both
are refused where the string enters, with the position of the offending character.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

# Unicode bidi controls (LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI; LRM, RLM, ALM) and the
# line/paragraph separators that split a line as a newline does.
BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, 0x2028, 0x2029])

NAME_MAX = 64  # part ids, profile names, part numbers, cell ids
TEXT_MAX = 200  # free text such as a profile's description
PATH_MAX = 1024  # file paths in configs (PATH_MAX of Linux is 4096; ours stay far below)


def unsafe_character(value: str) -> str | None:
    """Why ``value`` may not travel (the first bad character and where), or None if it may."""
    for i, char in enumerate(value):
        code = ord(char)
        if code in BIDI_CONTROLS:
            return f"bidi control U+{code:04X} at position {i + 1} is not allowed"
        if unicodedata.category(char) in ("Cc", "Cs"):  # C0/C1 controls, lone surrogates
            return f"control character U+{code:04X} at position {i + 1} is not allowed"
    return None


def printable(value: str) -> str:
    """``value`` with every unsafe character escaped, for one-line error messages."""
    if unsafe_character(value) is None and value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] or "?" for c in value)


def _verify_safe(value: str) -> str:
    problem = unsafe_character(value)
    if problem is not None:
        raise ValueError(problem)
    return value


SafeName = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_verify_safe)]
SafeText = Annotated[str, Field(min_length=0, max_length=TEXT_MAX), AfterValidator(_verify_safe)]
SafePath = Annotated[str, Field(min_length=1, max_length=PATH_MAX), AfterValidator(_verify_safe)]

__all__ = [
    "BIDI_CONTROLS",
    "NAME_MAX",
    "PATH_MAX",
    "TEXT_MAX",
    "SafeName",
    "SafePath",
    "SafeText",
    "printable",
    "unsafe_character",
]
