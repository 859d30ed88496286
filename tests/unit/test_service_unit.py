"""The systemd unit gives the daemon the time its stop path can take, and reload means SIGHUP."""

from __future__ import annotations

import configparser

from cellctl.app import stop_budget_s
from cellctl.config import preflight
from tests.conftest import PROFILES, REPO


def _service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(REPO / "systemd" / "cellctl.service")
    return unit["Service"]


def test_timeout_stop_sec_covers_the_worst_case_stop_of_the_shipped_cell():
    cell, profiles = preflight(PROFILES / "cell-sim.yaml", allow_emulated=True)
    budget = stop_budget_s(cell, profiles)
    assert 30 < budget <= float(_service()["TimeoutStopSec"])


def test_reload_sends_sighup_and_stop_sends_sigterm():
    service = _service()
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
