"""Who may talk to the bridge: its own CURVE certificate and an allow-list of cell public keys.

The allow-list is a directory with one zmq.auth public certificate per cell, named
``<cell_id>.key`` (as ``cellctl keys generate CELL_ID`` writes it). The ZAP handler asks
``callback`` about every CURVE handshake; a key that is not listed is denied, counted and
logged (once per key, so a rogue reconnecting every 100 ms does not flood the journal). A
frame's ZAP User-Id is the Z85 client key: ``cell_for`` maps it back to the cell it belongs to.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import structlog
import zmq
from pydantic import TypeAdapter, ValidationError

from cellctl.drivers import CellError
from cellctl.link.keys import read_certificate, warn_if_exposed, z85_key_problem
from cellctl.text import SafeName, printable

log = structlog.get_logger("cellctl.bridge.auth")

_DENIED_LOGGED_MAX = 1024  # distinct denied keys logged at warning level; later ones only counted
_CELL_ID: TypeAdapter[str] = TypeAdapter(SafeName)


class AuthError(CellError):
    """The allow-list or a raw key cannot be used (a bad key file raises KeyFileError)."""


class BridgeAuth:
    """The bridge's key pair and the cells allowed to connect.

    ``BridgeAuth(secret_key_file, allow_dir)`` reads the files at ``load()`` (again at every
    bridge start, so a restart picks up added or removed cells); ``from_keys`` takes raw Z85
    keys (the simulator's per-run keys) and reads nothing.
    """

    def __init__(self, secret_key_file: Path, allow_dir: Path) -> None:
        self._secret_key_file: Path | None = secret_key_file
        self._allow_dir: Path | None = allow_dir
        self.public_key = b""
        self.secret_key = b""
        self._cells: dict[bytes, str] = {}  # Z85 public key -> cell_id
        self.denied = 0
        self._denied_keys: OrderedDict[bytes, None] = OrderedDict()

    @classmethod
    def from_keys(cls, public: bytes, secret: bytes, allowed: dict[str, bytes]) -> BridgeAuth:
        """From Z85 keys (as ``zmq.curve_keypair()`` returns them): ``allowed`` maps cell_id -> public key."""
        auth = cls(Path(), Path())
        auth._secret_key_file = auth._allow_dir = None  # nothing to read at load()
        auth.public_key, auth.secret_key = _z85(public, "bridge public key"), _z85(secret, "bridge secret key")
        if zmq.curve_public(secret) != public:
            raise AuthError("the bridge secret key does not belong to its public key")
        auth._cells = _index({cell: _z85(key, f"public key of {cell}") for cell, key in allowed.items()})
        return auth

    @property
    def cells(self) -> dict[str, bytes]:
        """cell_id -> Z85 public key of every allowed cell."""
        return {cell: key for key, cell in self._cells.items()}

    def load(self) -> None:
        """Read the bridge certificate and the allow-list (blocking file I/O: call it off the loop).
        Raises AuthError naming the file and the problem."""
        if self._secret_key_file is None or self._allow_dir is None:
            return
        self.public_key, self.secret_key = _load_secret(self._secret_key_file)
        self._cells = _index(_load_allow_dir(self._allow_dir))
        log.info("bridge.allow_list", dir=str(self._allow_dir), cells=sorted(self._cells.values()))

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials provider (``configure_curve_callback``): is this Z85 client key listed?"""
        if key in self._cells:
            return True
        self.denied += 1
        if key not in self._denied_keys:
            if len(self._denied_keys) >= _DENIED_LOGGED_MAX:
                self._denied_keys.popitem(last=False)
            self._denied_keys[key] = None
            log.warning("bridge.auth_denied", client_key=key.decode("ascii", "replace"), denied_total=self.denied)
        return False

    def cell_for(self, user_id: str | None) -> str | None:
        """The cell whose key the ZAP handler authenticated (a frame's ``User-Id``), or None."""
        if user_id is None:
            return None
        return self._cells.get(user_id.encode("ascii", "replace"))


def _z85(key: bytes, what: str) -> bytes:
    problem = z85_key_problem(key)
    if problem is not None:
        raise AuthError(f"{what}: {problem}")
    return key


def _index(allowed: dict[str, bytes]) -> dict[bytes, str]:
    """key -> cell; one key listed for two cells would make the mapping back ambiguous."""
    by_key: dict[bytes, str] = {}
    for cell, key in sorted(allowed.items()):
        try:
            _CELL_ID.validate_python(cell)
        except ValidationError as exc:
            why = exc.errors(include_url=False)[0]["msg"]
            raise AuthError(f"allowed cell {printable(cell)!r} is not a cell id: {why}") from None
        if key in by_key:
            raise AuthError(f"cells {by_key[key]!r} and {cell!r} have the same public key")
        by_key[key] = cell
    return by_key


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    public, secret = read_certificate(path, need_secret=True)
    assert secret is not None  # need_secret
    warn_if_exposed(path)
    return public, secret


def _load_allow_dir(folder: Path) -> dict[str, bytes]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise AuthError(f"{folder}: {exc.strerror or exc}") from None
    allowed: dict[str, bytes] = {}
    for name in names:
        if not name.endswith(".key") or not (folder / name).is_file():
            continue  # cell.key_secret and anything else: never a cell's public key
        allowed[name.removesuffix(".key")] = read_certificate(folder / name, need_secret=False)[0]
    if not allowed:
        raise AuthError(f"{folder}: no <cell_id>.key certificate: no cell could connect")
    return allowed
