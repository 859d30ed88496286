"""Reading an input file whatever is at its path: bounded, and only if it is a regular file.

Every file cellctl reads on a user's say-so (configs, profiles, images, model cards, capture
and part records) may be anything: a folder, a FIFO that blocks the open forever, a device
that never ends (``/dev/zero``), a link to nothing or to itself, a file far larger than any
the format produces. The kind is checked before opening and again on what was opened (the
name may have been replaced in between), and no more than a limit is read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotARegularFile(OSError):
    """A path that is no regular file; never opened for reading. The message says what it is."""


class TooLarge(OSError):
    """A file larger than the limit read; the message says how large."""


class BadFile(ValueError):
    """``read_json``: a file that cannot be used; the message says why (not which file)."""


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, for a message: ``a FIFO``, ``a directory``, ..."""
    return _KINDS.get(stat.S_IFMT(mode), "another kind of file")


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` (a symbolic link followed) is no regular file, or None if it is one.
    OSError (with ``strerror``) if it cannot be looked at: missing, a loop of links, a name
    too long."""
    mode = os.stat(path).st_mode
    return None if stat.S_ISREG(mode) else f"not a regular file: {file_kind(mode)}"


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (a symbolic link is followed), at most ``limit``
    of them: ``NotARegularFile`` for a folder, a FIFO, a device, a socket or a link to nothing
    (never opened: a FIFO would block, a device never end), ``TooLarge`` for a file of more
    than ``limit`` bytes, ``OSError`` (with ``strerror``) when it cannot be opened or read."""
    try:
        problem = regular_file_problem(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise NotARegularFile("a symbolic link to a missing file") from None
        raise
    if problem is not None:
        raise NotARegularFile(problem)
    # O_NONBLOCK: should it have been replaced by a FIFO since, opening it does not wait
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # what was opened, not what the name was a moment ago
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"not a regular file: {file_kind(st.st_mode)}")
        if st.st_size > limit:
            raise TooLarge(f"{st.st_size} bytes, more than the {limit} read")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)  # it may have grown since
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TooLarge(f"more than the {limit} bytes read")
    return data


def read_json(path: Path, limit: int, what: str, **loads: Any) -> Any:
    """The JSON document in ``path`` (``read_bounded``; ``loads`` passed to ``json.loads``), or
    ``BadFile`` with why in one line: not a regular file, too large, unreadable, nested too
    deeply to be ``what`` (``a part record``), not valid JSON or not UTF-8."""
    try:
        return json.loads(read_bounded(path, limit), **loads)
    except (NotARegularFile, TooLarge) as exc:
        raise BadFile(str(exc)) from None
    except OSError as exc:
        raise BadFile(f"cannot read it: {exc.strerror or exc}") from None
    except RecursionError:
        raise BadFile(f"nested too deeply to be {what}") from None
    except ValueError as exc:  # UnicodeDecodeError too
        raise BadFile(f"not valid JSON: {exc}") from None
