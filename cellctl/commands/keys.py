"""``cellctl keys generate NAME --dir DIR [--force]`` and ``cellctl keys show FILE``: CURVE key
pairs for the robot link, as ZeroMQ certificate files.

``generate`` writes ``DIR/NAME.key`` (public, 0644) and ``DIR/NAME.key_secret`` (public and
secret, 0600) and prints the public key; it never overwrites a key without ``--force`` (a
replaced key locks the cell or the bridge out until the other side is told). ``show`` prints
the public key of either file, for ``robot.bridge_public_key`` or a bridge's allow-list.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import zmq.auth

from cellctl.link.keys import KeyFileError, read_certificate
from cellctl.text import printable, unsafe_character

PUBLIC_MODE = 0o644
SECRET_MODE = 0o600
EXIT_ERROR = 2
NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")  # a cell_id is a valid name


def _error(message: str) -> int:
    print(f"error: {printable(message)}", file=sys.stderr)
    return EXIT_ERROR


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a key pair (it becomes a file name and, for a cell, its cell_id)."""
    problem = unsafe_character(name)
    if problem is not None:
        return f"key name {name!r}: {problem}"
    if not NAME_RE.fullmatch(name):
        return f"key name {name!r}: use 1-64 letters, digits, '_', '.', '-' (not starting with '.')"
    return None


def generate(name: str, folder: Path, *, force: bool) -> tuple[Path, Path, bytes]:
    """Write NAME.key and NAME.key_secret in ``folder``; KeyFileError on any refusal."""
    problem = name_problem(name)
    if problem is not None:
        raise KeyFileError(problem)
    if folder.exists() and not folder.is_dir():
        raise KeyFileError(f"{folder} is not a folder")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new key folder is private
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    existing = [p for p in (public, secret) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise KeyFileError(f"{existing[0]} exists; refusing to replace a key without --force")
    for path in existing:
        path.unlink()  # a fresh file: the old one's mode and links do not carry over
    # the secret file is created unreadable by others from its first byte, not chmod-ed later
    old_umask = os.umask(0o077)
    try:
        written_public, written_secret = zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old_umask)
    os.chmod(written_secret, SECRET_MODE)
    os.chmod(written_public, PUBLIC_MODE)
    key, _ = read_certificate(Path(written_public), need_secret=False)
    return Path(written_public), Path(written_secret), key


def main(args: argparse.Namespace) -> int:
    try:
        if args.keys_command == "generate":
            public, secret, key = generate(args.name, args.dir, force=args.force)
            print(key.decode("ascii"))
            print(f"wrote {public} (public) and {secret} (secret, mode 0600)", file=sys.stderr)
            return 0
        key, _ = read_certificate(args.file, need_secret=False)
        print(key.decode("ascii"))
        return 0
    except KeyFileError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"{exc.filename or ''}: {exc.strerror or exc}")
