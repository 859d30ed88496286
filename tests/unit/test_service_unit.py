"""The systemd unit gives the daemon the time its stop path can take, and reload means SIGHUP."""

from __future__ import annotations

import configparser

from cellctl.app import stop_budget_s
from cellctl.config import preflight
from tests.conftest import PROFILES, REPO


def _service(name: str = "cellctl.service") -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(REPO / "systemd" / name)
    return unit["Service"]


def test_timeout_stop_sec_covers_the_worst_case_stop_of_the_shipped_cell():
    cell, profiles = preflight(PROFILES / "cell-sim.yaml", allow_emulated=True)
    budget = stop_budget_s(cell, profiles)
    assert 30 < budget <= float(_service()["TimeoutStopSec"])


def test_reload_sends_sighup_and_stop_sends_sigterm():
    service = _service()
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"


def test_the_cells_secret_key_comes_as_a_credential_under_the_name_the_daemon_looks_up(tmp_path):
    from pathlib import Path

    from cellctl.config import RobotLinkSettings
    from cellctl.link.keys import secret_key_path

    credential, _, source = _service()["LoadCredential"].partition(":")
    assert Path(source).is_absolute() and Path(source).name == credential
    default = RobotLinkSettings().secret_key_file
    assert credential == Path(default).name
    # with $CREDENTIALS_DIRECTORY holding that file, the daemon reads it from there
    (tmp_path / credential).write_text("x")
    config = tmp_path / "etc" / "cell.yaml"
    assert secret_key_path(default, config, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == tmp_path / credential
    assert secret_key_path(default, config, {}) == tmp_path / "etc" / credential


def test_the_bridge_unit_runs_a_command_line_cellctl_accepts_with_its_key_from_the_credential(tmp_path):
    import shlex

    from cellctl.cli import build_parser
    from cellctl.commands.keys import generate

    service = _service("cellctl-bridge.service")
    credential, _, source = service["LoadCredential"].partition(":")
    assert source == f"/etc/cellctl/keys/{credential}"
    argv = shlex.split(service["ExecStart"])
    assert argv[:2] == ["/usr/local/bin/cellctl", "bridge"]
    assert f"%d/{credential}" in argv  # %d: systemd's $CREDENTIALS_DIRECTORY
    # the same line, with the unit's paths moved under tmp_path, parses as `cellctl bridge` would
    generate("bridge", tmp_path / "credentials", force=False)
    (tmp_path / "etc" / "cellctl" / "bridge-allow").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "cellctl-bridge").mkdir(parents=True)
    moved = [
        a.replace("%d", str(tmp_path / "credentials"))
        .replace("/etc/", f"{tmp_path}/etc/")
        .replace("/var/", f"{tmp_path}/var/")
        for a in argv[1:]
    ]
    args = build_parser().parse_args(moved)
    assert args.secret_key == tmp_path / "credentials" / credential
    assert args.dedupe is not None and args.security == "curve"
    assert float(service["TimeoutStopSec"]) >= 10 and service["KillSignal"] == "SIGTERM"
