"""Argument types of the ``cellctl`` command line: each refuses a bad value with one line.

argparse turns the ValueError/ArgumentTypeError of a type function into
``error: argument --parts: must be at least 1 (got 0)``, exit 2, before any work starts.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cellctl.files import file_kind


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return float(kind(text)) if kind is float else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return value


SQLITE_INT_MAX = 2**63 - 1  # the largest integer SQLite holds (a seq, a row id)


def seq_number(text: str) -> int:
    """A verdict's seq: 0 or more and no larger than SQLite's integers."""
    value = non_negative_int(text)
    if value > SQLITE_INT_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {SQLITE_INT_MAX} (2**63 - 1, SQLite's largest integer)")
    return value


def fraction(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (got {text})")
    return value


def open_fraction(text: str) -> float:
    value = _number(text, float)
    if not 0.0 < value < 1.0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be in (0, 1) (got {text})")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (got {text})")
    return value


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$")


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not _HOST.match(host):
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port is not a number: {text!r}") from None
    if not 1 <= port <= 65_535:
        raise argparse.ArgumentTypeError(f"port must be in [1, 65535] (got {port})")
    return host.strip("[]"), port


def zmq_endpoint(text: str) -> str:
    if not re.match(r"^(tcp://[^\s/]+:(\d+|\*)|ipc://\S+)$", text) or len(text) > 1024:
        raise argparse.ArgumentTypeError(f"not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH): {text!r}")
    return text


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return value


def _path_type(check: Callable[[Path, str], None]) -> Callable[[str], Path]:
    """An argparse type from a path check: ``check(path, text)`` raises ArgumentTypeError for
    what it refuses; an OS error on the way (a name too long, a loop of links) is refused too."""

    @functools.wraps(check)
    def parse(text: str) -> Path:
        path = Path(text)
        try:
            check(path, text)
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None
        return path

    return parse


@_path_type
def existing_file(path: Path, text: str) -> None:
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if path.exists() and not path.is_file():  # a FIFO would block the reader
        raise argparse.ArgumentTypeError(f"{text}: not a regular file: {file_kind(path.stat().st_mode)}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text}")


@_path_type
def existing_dir(path: Path, text: str) -> None:
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot read directory {text}")


@_path_type
def output_file(path: Path, text: str) -> None:
    """A file we may write: its folder exists and is writable, and it is not a directory."""
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; name a file")
    if path.exists() and not path.is_file():  # a FIFO would block the writer, a device never end
        raise argparse.ArgumentTypeError(f"{text}: not a regular file: {file_kind(path.stat().st_mode)}")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}")


@_path_type
def output_dir(path: Path, text: str) -> None:
    """A folder we may create or fill: the nearest existing ancestor is a writable folder."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, so {text} cannot be a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {existing}")


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_AGE_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(text: str) -> datetime:
    """A point in time: ISO 8601 (``2026-12-06``, ``2026-12-06T08:00``, UTC unless it names
    its offset) or an age back from now (``30m``, ``12h``, ``7d``); returned aware, in UTC.
    A time outside the years 1-9999 once in UTC, or an age reaching before year 1, is refused."""
    age = _AGE.match(text.strip())
    try:
        if age:
            return datetime.now(UTC) - timedelta(seconds=float(age.group(1)) * _AGE_S[age.group(2)])
        when = datetime.fromisoformat(text.strip())
        return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"out of range: {text!r} (a time in the years 1-9999 in UTC, or an age that goes back no further than that)"
        ) from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 such as 2026-12-06T08:00, or an age such as 30m, 12h, 7d)"
        ) from None
