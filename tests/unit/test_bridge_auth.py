"""The bridge's allow-list: loading certificates, the ZAP provider's decisions, User-Id -> cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zmq
import zmq.auth

from cellctl.bridge.auth import AuthError, BridgeAuth
from cellctl.drivers import CellError


def make(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(folder, name)
    return Path(public), Path(secret)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    _, bridge_secret = make(tmp_path / "bridge", "bridge")
    allow = tmp_path / "allow"
    for cell in ("cell-a", "cell-b"):
        public, _ = make(tmp_path / cell, cell)
        allow.mkdir(exist_ok=True)
        shutil.copy(public, allow / public.name)
    # what an installer may leave in the folder: never taken as a cell's key
    shutil.copy(tmp_path / "cell-a" / "cell-a.key_secret", allow / "cell-a.key_secret")
    (allow / "README").write_text("one <cell_id>.key per cell\n")
    return {"secret": bridge_secret, "allow": allow, "root": tmp_path}


def key_of(path: Path) -> bytes:
    return zmq.auth.load_certificate(path)[0]


def test_load_reads_the_bridge_keys_and_one_cell_per_key_file(files):
    auth = BridgeAuth(files["secret"], files["allow"])
    assert auth.cells == {}  # nothing is read before load()
    auth.load()
    public, secret = zmq.auth.load_certificate(files["secret"])
    assert (auth.public_key, auth.secret_key) == (public, secret)
    root = files["root"]
    assert auth.cells == {
        "cell-a": key_of(root / "cell-a" / "cell-a.key"),
        "cell-b": key_of(root / "cell-b" / "cell-b.key"),
    }


def test_the_provider_allows_listed_keys_only_and_counts_denials(files):
    auth = BridgeAuth(files["secret"], files["allow"])
    auth.load()
    listed = auth.cells["cell-b"]
    stranger, _ = zmq.curve_keypair()
    assert auth.callback("cellctl", listed) is True
    assert auth.callback("cellctl", stranger) is False
    assert auth.callback("cellctl", stranger) is False
    assert auth.denied == 2
    assert auth.cell_for(listed.decode()) == "cell-b"
    assert auth.cell_for(stranger.decode()) is None
    assert auth.cell_for(None) is None


def test_a_reload_picks_up_a_removed_cell(files):
    auth = BridgeAuth(files["secret"], files["allow"])
    auth.load()
    key_b = auth.cells["cell-b"]
    (files["allow"] / "cell-b.key").unlink()
    auth.load()
    assert set(auth.cells) == {"cell-a"}
    assert auth.callback("*", key_b) is False


def test_from_keys_reads_no_file_and_checks_the_keys():
    public, secret = zmq.curve_keypair()
    cell_public, _ = zmq.curve_keypair()
    auth = BridgeAuth.from_keys(public, secret, {"sim-cell": cell_public})
    auth.load()  # nothing to read: still the same keys
    assert auth.public_key == public and auth.cells == {"sim-cell": cell_public}
    other_public, _ = zmq.curve_keypair()
    with pytest.raises(AuthError, match="does not belong"):
        BridgeAuth.from_keys(other_public, secret, {})
    with pytest.raises(AuthError, match="public key of c"):
        BridgeAuth.from_keys(public, secret, {"c": b"short"})
    with pytest.raises(AuthError, match="same public key"):
        BridgeAuth.from_keys(public, secret, {"c1": cell_public, "c2": cell_public})
    with pytest.raises(AuthError, match="is not a cell id"):
        BridgeAuth.from_keys(public, secret, {"bad\u202ename": cell_public})


@pytest.mark.parametrize(
    ("breakage", "words"),
    [
        ("public-as-secret", "holds no secret key"),
        ("garbage-secret", "is not a ZeroMQ certificate"),
        ("missing-secret", "does not exist"),
        ("empty-allow", "no <cell_id>.key"),
        ("garbage-cell", "is not a ZeroMQ certificate"),
        ("duplicate-cell", "same public key"),
        ("bad-cell-name", "is not a cell id"),
    ],
)
def test_unusable_files_raise_one_clear_error(files, breakage, words):
    secret, allow, root = files["secret"], files["allow"], files["root"]
    if breakage == "public-as-secret":
        secret = root / "bridge" / "bridge.key"
    elif breakage == "garbage-secret":
        secret.write_bytes(b"\x00\xff not a certificate")
    elif breakage == "missing-secret":
        secret = root / "nope.key_secret"
    elif breakage == "empty-allow":
        allow = root / "empty"
        allow.mkdir()
    elif breakage == "garbage-cell":
        (allow / "cell-c.key").write_text("hello\n")
    elif breakage == "duplicate-cell":
        shutil.copy(allow / "cell-a.key", allow / "cell-z.key")
    elif breakage == "bad-cell-name":
        shutil.copy(allow / "cell-a.key", allow / ("x" * 70 + ".key"))
        (allow / "cell-a.key").unlink()
    with pytest.raises(CellError, match=words):
        BridgeAuth(secret, allow).load()


def test_the_provider_logs_a_denied_key_once(files):
    from structlog.testing import capture_logs

    auth = BridgeAuth(files["secret"], files["allow"])
    auth.load()
    stranger, _ = zmq.curve_keypair()
    with capture_logs() as logs:
        for _ in range(50):  # a rogue reconnecting every 100 ms
            auth.callback("cellctl", stranger)
    denied = [e for e in logs if e["event"] == "bridge.auth_denied"]
    assert len(denied) == 1 and denied[0]["client_key"] == stranger.decode()
    assert auth.denied == 50
