"""``cellctl sim --faults``: every named fault end to end, alone and all together.

Each run is the real simulated cell at time scale 0 (pty emulators, ZeroMQ, SQLite, the INT8
model), with the fault forced onto a chosen part after the warm-up. Whatever the fault, every
part is delivered, nothing is lost, nothing uninspected is PASSed, the daemon never crashes,
and the struck part ends the way the fault demands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog

from cellctl.sim.faults import CELL_FAULTS, FAULT_NAMES, FaultNameError, FaultPlan, parse_fault_names, plan_faults
from cellctl.sim.run import simulate
from tests.system.sim_args import sim_args

PARTS = 6
STRUCK = 4  # the first part after the warm-up
STRUCK_ID = f"P{STRUCK:05d}"

# the start of the struck part's reason: the step that failed
EXPECTED_REASON = {
    "camera-timeout": ("frame: ",),
    "camera-disconnect": ("trigger: ", "frame: "),
    "incomplete-frame": ("frame: ", "preprocess: "),
    "stepper-alarm": ("move: ",),
    "serial-garbage": ("move: ",),
    "serial-unplug": ("move: ",),
    "light-fault": ("head@0: no part seen",),  # dark views: the part is not located
    "model-nan": ("infer: ",),
    "model-error": ("infer: ",),
    "records-readonly": ("record: ",),
    "disk-full": ("record: ",),
    "profile-refused": ("profile: ",),
}


def _args(tmp_path: Path, parts: int, faults: str = "", **kw: object) -> argparse.Namespace:
    return sim_args(tmp_path, parts, seed=11, defect_rate=0.0, faults=faults, **kw)


def _rows(tmp_path: Path) -> dict[str, tuple]:
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        rows = db.execute("SELECT seq, part_id, verdict, reason FROM inspections ORDER BY seq").fetchall()
    return {r[1]: r for r in rows}


def _healthy(s: dict, parts: int) -> None:
    assert s["parts"] == parts and s["delivered"] == parts and s["lost"] == 0
    assert s["passed_uninspected"] == 0 and s["crashes"] == 0
    assert s["wrong_part"] == 0 and s["duplicates_acted"] == 0 and s["wrong_bin"] == 0
    assert not s["interrupted"] and not s["timed_out"]


# --- the plan ------------------------------------------------------------------------------


def test_the_plan_is_deterministic_spares_the_warm_up_and_puts_one_fault_per_part():
    plan = plan_faults(CELL_FAULTS, 300, 4242)
    assert plan == plan_faults(CELL_FAULTS, 300, 4242)
    assert plan != plan_faults(CELL_FAULTS, 300, 4243)
    assert min(plan.at) > 3 and max(plan.at) <= 300
    counts = {name: list(plan.at.values()).count(name) for name in CELL_FAULTS}
    assert set(counts.values()) == {300 // 40}  # each about once per 40 parts
    small = plan_faults(CELL_FAULTS, 17, 1)  # just room for each once
    assert sorted(small.at) == list(range(4, 18)) and set(small.at.values()) == set(CELL_FAULTS)
    with pytest.raises(ValueError, match="too few"):
        plan_faults(CELL_FAULTS, 16, 1)
    everything = plan_faults(FAULT_NAMES, 300, 5151)  # cell and link faults together
    assert set(everything.at.values()) == set(FAULT_NAMES)


def test_fault_names_are_checked():
    assert parse_fault_names(" sighup,model-nan,,sighup") == ("sighup", "model-nan")
    with pytest.raises(FaultNameError, match=r"unknown fault 'camera-melt' \(known: camera-timeout"):
        parse_fault_names("sighup,camera-melt")


def test_cli_refuses_an_unknown_fault_in_one_line_and_too_few_parts():
    for argv, needle in (
        (["--faults", "sighup,nope"], "error: unknown fault 'nope' (known: "),
        (["--faults", "sighup,model-nan", "--parts", "4"], "error: --parts 4 is too few"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "cellctl", "sim", *argv], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()] and needle in done.stderr
        assert "Traceback" not in done.stderr


# --- each fault alone, in process ----------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(EXPECTED_REASON))
async def test_each_fault_alone_strikes_its_part_and_the_cell_carries_on(tmp_path, fault):
    s = await simulate(_args(tmp_path, PARTS), tmp_path, plan=FaultPlan({STRUCK: fault}))
    _healthy(s, PARTS)
    outcomes = {"PASS": 0, "REJECT": 0, "RECHECK": 1, "held": 0, "lost": 0}
    assert s["faults"] == {fault: {"injected": 1, "outcomes": outcomes}}
    rows = _rows(tmp_path)
    _, _, verdict, reason = rows[STRUCK_ID]
    assert verdict == "RECHECK" and reason.startswith(EXPECTED_REASON[fault]), reason
    if fault == "stepper-alarm":
        assert "over-temperature" in reason
    # the part before was judged normally, so the fault did not leak backwards
    assert rows[f"P{STRUCK - 1:05d}"][2] in ("PASS", "REJECT")


async def test_sighup_mid_part_reloads_the_profiles_and_the_part_is_judged_normally(tmp_path):
    with structlog.testing.capture_logs() as logs:
        s = await simulate(_args(tmp_path, PARTS), tmp_path, plan=FaultPlan({STRUCK: "sighup"}))
    _healthy(s, PARTS)
    assert s["faults"]["sighup"]["injected"] == 1
    assert _rows(tmp_path)[STRUCK_ID][2] in ("PASS", "REJECT")
    events = [e["event"] for e in logs]
    assert "signal.reload" in events and "profiles.reloaded" in events
    # reloaded between parts: after the struck part was accepted, before the next one
    accepted = [(e["event"], e.get("part_id")) for e in logs if e["event"] in ("part.accepted", "profiles.reloaded")]
    at = accepted.index(("profiles.reloaded", None))
    assert accepted[at - 1] == ("part.accepted", STRUCK_ID)


# --- the daemon as a child process ---------------------------------------------------------


def _daemon_events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "records.db.daemon.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_daemon_kill_mid_part_restarts_the_daemon_and_the_part_is_rechecked(tmp_path):
    s = await simulate(_args(tmp_path, PARTS), tmp_path, plan=FaultPlan({STRUCK: "daemon-kill"}))
    _healthy(s, PARTS)
    assert s["restarts"] == 1 and s["faults"]["daemon-kill"]["injected"] == 1
    assert s["duplicates_acted"] == 0 and s["wrong_part"] == 0  # no part judged or sorted twice
    _, _, verdict, reason = _rows(tmp_path)[STRUCK_ID]
    assert verdict == "RECHECK" and reason.startswith("interrupted: "), reason
    rows = _rows(tmp_path)
    assert sorted(r[0] for r in rows.values()) == list(range(1, PARTS + 1))  # no seq reused or skipped
    events = _daemon_events(tmp_path)
    assert [e["part_id"] for e in events if e["event"] == "part.interrupted"] == [STRUCK_ID]
    assert sum(e["event"] == "cell.started" for e in events) == 2


async def test_all_cell_faults_together(tmp_path):
    parts = 3 + 2 * len(CELL_FAULTS)  # every fault once, a clean part between two faulted ones
    plan = FaultPlan({4 + 2 * k: name for k, name in enumerate(CELL_FAULTS)})
    s = await simulate(_args(tmp_path, parts), tmp_path, plan=plan)
    _healthy(s, parts)
    assert s["restarts"] == 1
    assert {name: f["injected"] for name, f in s["faults"].items()} == dict.fromkeys(CELL_FAULTS, 1)
    rows = _rows(tmp_path)
    for number, name in plan.at.items():
        _, _, verdict, reason = rows[f"P{number:05d}"]
        if name in EXPECTED_REASON:
            assert verdict == "RECHECK" and reason.startswith(EXPECTED_REASON[name]), (name, reason)


# --- Ctrl-C --------------------------------------------------------------------------------


def _judged(records: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{records}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


@pytest.mark.parametrize("faults", ["", "daemon-kill"])
def test_ctrl_c_ends_sim_with_the_partial_summary_and_exit_130(tmp_path, faults):
    records = tmp_path / "records.db"
    argv = [sys.executable, "-m", "cellctl", "sim", "--parts", "500", "--json", "--records", str(records)]
    proc = subprocess.Popen(
        [*argv, "--faults", faults] if faults else argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # the cue: a first verdict on record (the deadline only guards against a hang)
        deadline = time.monotonic() + 120
        while _judged(records) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    s = json.loads(out)
    assert s["interrupted"] and 1 <= s["parts"] < 500
    # the part in hand was finished; one announced but not yet taken may wait in the fixture
    assert s["lost"] == 0 and s["delivered"] + s["in_fixture"] == s["parts"]
