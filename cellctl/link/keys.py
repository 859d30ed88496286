"""CURVE keys of the robot link: Z85 checks and the cell's certificate file.

Key files are ZeroMQ certificates as ``zmq.auth.create_certificates`` writes them: ``NAME.key``
holds the public key, ``NAME.key_secret`` the public and the secret key. The cell reads its own
certificate from ``robot.secret_key_file`` (relative to the config file); when systemd's
``$CREDENTIALS_DIRECTORY`` is set and holds a file of the same base name (the unit's
``LoadCredential=``), that file is used instead. The bridge's public key is pinned in the config.

Nothing here runs at import: the environment and the files are read when a caller asks.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import zmq
import zmq.auth
from zmq.utils import z85

from cellctl.drivers import CellError
from cellctl.text import printable

if TYPE_CHECKING:  # the config imports this module for its Z85 check: no import cycle at runtime
    from cellctl.config.cell import RobotLinkSettings

log = structlog.get_logger("cellctl.link.keys")

Z85_KEY_CHARS = 40  # a 32-byte CURVE key in Z85
CERT_MAX_BYTES = 64 * 1024  # a certificate is ~400 bytes; anything far larger is not one
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class KeyFileError(CellError):
    """A key file that cannot be used: missing, unreadable, not a certificate, no secret key."""


@dataclass(frozen=True)
class LinkKeys:
    """The cell's CURVE key pair and the bridge's pinned public key, all Z85 (40 bytes)."""

    public_key: bytes
    secret_key: bytes = field(repr=False)  # never in a log line or a traceback
    bridge_public_key: bytes
    source: str = ""  # where the key pair came from, for log lines


def z85_key_problem(text: str | bytes) -> str | None:
    """Why ``text`` is not a Z85-encoded 32-byte key (None if it is)."""
    if isinstance(text, str):
        foreign = next((i for i, c in enumerate(text) if not c.isascii()), None)
        if foreign is not None:
            return f"character U+{ord(text[foreign]):04X} at position {foreign + 1} is not Z85"
        text = text.encode("ascii")
    raw = text
    if len(raw) != Z85_KEY_CHARS:
        return f"a CURVE key in Z85 has {Z85_KEY_CHARS} characters, this one {len(raw)}"
    alphabet = z85.Z85CHARS
    bad = next((i for i, c in enumerate(raw) if c not in alphabet), None)
    if bad is not None:
        return f"character {printable(chr(raw[bad]))!r} at position {bad + 1} is not Z85"
    try:
        z85.decode(raw)
    except (ValueError, struct.error):  # 5 characters worth more than 2**32
        return "not a valid Z85 key (a group of 5 characters overflows 32 bits)"
    return None


def secret_key_path(secret_key_file: str, config_path: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The certificate file the cell uses: ``$CREDENTIALS_DIRECTORY/<base name>`` when that
    exists, else ``secret_key_file`` relative to the config file's folder."""
    env = os.environ if environ is None else environ
    credentials = env.get(CREDENTIALS_ENV)
    if credentials:
        candidate = Path(credentials) / Path(secret_key_file).name
        if candidate.is_file():
            return candidate
    path = Path(secret_key_file)
    if not path.is_absolute() and config_path is not None:
        path = config_path.resolve().parent / path
    return path


def read_certificate(path: Path, *, need_secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) Z85 keys of a certificate file; KeyFileError names what is wrong.

    With ``need_secret`` the file must hold a secret key that belongs to its public key.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a file")
        if info.st_size > CERT_MAX_BYTES:
            raise KeyFileError(f"{path} has {info.st_size} bytes: no ZeroMQ certificate is that large")
        public, secret = zmq.auth.load_certificate(path)
    except KeyFileError:
        raise
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist (make one with `cellctl keys generate`)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise KeyFileError(f"{path} is not a ZeroMQ certificate (no public-key line)") from None
    problem = z85_key_problem(public)
    if problem is not None:
        raise KeyFileError(f"{path}: public-key: {problem}")
    if secret is None:
        if need_secret:
            raise KeyFileError(f"{path} holds no secret key (a public .key file? use the .key_secret file)")
        return public, None
    problem = z85_key_problem(secret)
    if problem is not None:
        raise KeyFileError(f"{path}: secret-key: {problem}")
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{path}: the secret key does not belong to the public key in the same file")
    return public, secret


def exposure(path: Path) -> str | None:
    """Why a secret key file is too open (group or others may read it), or None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"mode {mode:04o}: readable by group or others (chmod 600 {path})"
    return None


def warn_if_exposed(path: Path) -> None:
    why = exposure(path)
    if why is not None:
        log.warning("robot_link.secret_key_exposed", file=str(path), why=why)


def load_link_keys(
    settings: RobotLinkSettings, config_path: Path | None, environ: Mapping[str, str] | None = None
) -> LinkKeys | None:
    """The keys of ``settings`` (None with ``security: none``); KeyFileError if unusable."""
    if settings.security == "none":
        return None
    if settings.bridge_public_key is None:
        raise KeyFileError("robot.bridge_public_key is required with robot.security: curve")
    path = secret_key_path(settings.secret_key_file, config_path, environ)
    public, secret = read_certificate(path, need_secret=True)
    assert secret is not None  # need_secret
    warn_if_exposed(path)
    return LinkKeys(public, secret, settings.bridge_public_key.encode("ascii"), str(path))
