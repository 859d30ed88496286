"""CURVE keys of the robot link: `cellctl keys`, certificate files, the $CREDENTIALS_DIRECTORY
rule and the Z85 checks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import structlog
import zmq
import zmq.auth

from cellctl.cli import main
from cellctl.commands.keys import generate
from cellctl.config import RobotLinkSettings
from cellctl.link.keys import (
    KeyFileError,
    LinkKeys,
    exposure,
    load_link_keys,
    read_certificate,
    secret_key_path,
    z85_key_problem,
)


def cli(argv: list[str]) -> int:
    """The exit code of ``cellctl ARGV``, usage errors (argparse's SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_a_public_and_a_0600_secret_certificate_and_prints_the_key(tmp_path, capsys):
    assert cli(["keys", "generate", "cell-01", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()
    public, secret = tmp_path / "cell-01.key", tmp_path / "cell-01.key_secret"
    assert _mode(secret) == 0o600 and _mode(public) == 0o644
    key, none = zmq.auth.load_certificate(public)
    same, secret_key = zmq.auth.load_certificate(secret)
    assert none is None and secret_key is not None and key == same == printed.encode()
    assert zmq.curve_public(secret_key) == key
    for file in (public, secret):
        assert cli(["keys", "show", str(file)]) == 0
        assert capsys.readouterr().out.strip() == printed


def test_generate_never_replaces_a_key_without_force(tmp_path, capsys):
    assert cli(["keys", "generate", "bridge", "--dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out.strip()
    secret = tmp_path / "bridge.key_secret"
    before = secret.read_bytes()
    assert cli(["keys", "generate", "bridge", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--force" in err
    assert secret.read_bytes() == before
    secret.chmod(0o644)  # someone loosened it: a replaced key does not inherit that
    assert cli(["keys", "generate", "bridge", "--dir", str(tmp_path), "--force"]) == 0
    assert capsys.readouterr().out.strip() != first and _mode(secret) == 0o600


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["keys", "generate", "../up", "--dir", "{tmp}"], "key name '../up'"),
        (["keys", "generate", ".hidden", "--dir", "{tmp}"], "key name '.hidden'"),
        (["keys", "generate", "a\u202eb", "--dir", "{tmp}"], "bidi control"),
        (["keys", "generate", "x" * 65, "--dir", "{tmp}"], "1-64"),
        (["keys", "generate", "cell", "--dir", "{tmp}/junk/keys"], "is a file"),
        (["keys", "generate", "cell"], "required: --dir"),
        (["keys", "show", "{tmp}/none.key"], "no such file"),
        (["keys", "show", "{tmp}/junk"], "not a ZeroMQ certificate"),
        (["keys"], "required"),
    ],
)
def test_misuse_is_one_error_line(tmp_path, capsys, argv, says):
    (tmp_path / "junk").write_bytes(b"\x00\xff garbage\n" * 10)
    code = cli([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert not list(tmp_path.glob("*.key*"))


def test_a_folder_that_cannot_be_written_is_one_error_line(tmp_path, capsys):
    # root ignores permissions: a path that is a file where a folder is needed refuses everyone
    folder = tmp_path / "file"
    folder.write_text("x")
    assert cli(["keys", "generate", "cell", "--dir", str(folder)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def _cert(folder: Path, name: str = "cell") -> tuple[Path, Path]:
    public, secret = zmq.auth.create_certificates(folder, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def test_read_certificate_refuses_what_is_no_usable_key_pair(tmp_path):
    public, secret = _cert(tmp_path)
    assert read_certificate(secret, need_secret=True) == zmq.auth.load_certificate(secret)
    assert read_certificate(public, need_secret=False)[1] is None
    with pytest.raises(KeyFileError, match="holds no secret key"):
        read_certificate(public, need_secret=True)
    _, other_secret = zmq.curve_keypair()
    mixed = tmp_path / "mixed"
    mixed.write_text(secret.read_text().replace(zmq.auth.load_certificate(secret)[1].decode(), other_secret.decode()))
    with pytest.raises(KeyFileError, match="does not belong"):
        read_certificate(mixed, need_secret=True)
    short = tmp_path / "short"
    short.write_text('curve\n    public-key = "abc"\n')
    with pytest.raises(KeyFileError, match="40 characters"):
        read_certificate(short, need_secret=False)
    huge = tmp_path / "huge"
    huge.write_bytes(b"#" * 100_000)
    with pytest.raises(KeyFileError, match="no ZeroMQ certificate is that large"):
        read_certificate(huge, need_secret=False)
    with pytest.raises(KeyFileError, match="is not a file"):
        read_certificate(tmp_path, need_secret=False)
    with pytest.raises(KeyFileError, match="does not exist"):
        read_certificate(tmp_path / "none", need_secret=False)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("abc", "40 characters, this one 3"),
        ("a" * 39 + '"', "is not Z85"),
        ("a" * 39 + "\u202e", "U+202E at position 40 is not Z85"),
        ("%" * 40, "overflows"),
    ],
)
def test_z85_problems(key, says):
    problem = z85_key_problem(key)
    assert problem is not None and says in problem
    assert z85_key_problem(zmq.curve_keypair()[0]) is None


def test_the_credentials_directory_wins_when_it_holds_the_file(tmp_path):
    config = tmp_path / "etc" / "cell.yaml"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert secret_key_path("keys/cell.key_secret", config, env) == tmp_path / "etc" / "keys" / "cell.key_secret"
    (credentials / "cell.key_secret").write_text("x")
    assert secret_key_path("keys/cell.key_secret", config, env) == credentials / "cell.key_secret"
    assert secret_key_path("/abs/cell.key_secret", config, env) == credentials / "cell.key_secret"
    assert secret_key_path("/abs/cell.key_secret", config, {}) == Path("/abs/cell.key_secret")
    assert (
        secret_key_path("cell.key_secret", config, {"CREDENTIALS_DIRECTORY": ""}) == config.parent / "cell.key_secret"
    )


def test_load_link_keys(tmp_path):
    _, secret = _cert(tmp_path)
    bridge = zmq.curve_keypair()[0]
    config = tmp_path / "cell.yaml"
    settings = RobotLinkSettings(bridge_public_key=bridge.decode(), secret_key_file=secret.name)
    keys = load_link_keys(settings, config, {})
    assert isinstance(keys, LinkKeys)
    public, secret_key = zmq.auth.load_certificate(secret)
    assert (keys.public_key, keys.secret_key, keys.bridge_public_key) == (public, secret_key, bridge)
    assert secret_key is not None and secret_key.decode() not in repr(keys)
    assert load_link_keys(RobotLinkSettings(security="none"), config, {}) is None
    with pytest.raises(KeyFileError, match="bridge_public_key is required"):
        load_link_keys(RobotLinkSettings(secret_key_file=secret.name), config, {})


def test_a_secret_readable_by_others_is_used_with_a_warning(tmp_path):
    _, secret = _cert(tmp_path)
    assert exposure(secret) is None
    secret.chmod(0o644)
    assert "readable by group or others" in (exposure(secret) or "")
    settings = RobotLinkSettings(bridge_public_key=zmq.curve_keypair()[0].decode(), secret_key_file=str(secret))
    with structlog.testing.capture_logs() as logs:
        assert load_link_keys(settings, None, {}) is not None
    assert [e["log_level"] for e in logs if e["event"] == "robot_link.secret_key_exposed"] == ["warning"]


def test_link_settings_defaults_are_the_documented_ones_and_backoff_cannot_shrink():
    from pydantic import ValidationError

    s = RobotLinkSettings()
    assert (s.security, s.bridge_public_key, s.secret_key_file) == ("curve", None, "cell.key_secret")
    assert (s.heartbeat_s, s.missed_beats, s.ack_timeout_s, s.ack_backoff_max_s) == (1.0, 3, 1.0, 8.0)
    assert (s.delivery_deadline_s, s.window) == (30.0, 8)
    with pytest.raises(ValidationError, match="below ack_timeout_s"):
        RobotLinkSettings(ack_timeout_s=2.0, ack_backoff_max_s=1.0)
    with pytest.raises(ValidationError, match="security"):
        RobotLinkSettings(security="plain")  # type: ignore[arg-type]


def test_generate_creates_a_missing_key_folder_private(tmp_path):
    public, secret, _ = generate("cell", tmp_path / "etc" / "keys", force=False)
    assert public.parent.is_dir() and (public.parent.stat().st_mode & 0o777) == 0o700
    assert (secret.stat().st_mode & 0o777) == 0o600
