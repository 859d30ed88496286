"""The whole simulated cell: daemon, sim devices, INT8 model, SQLite, real ZeroMQ to the robot."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from pathlib import Path

import structlog

from cellctl.sim.run import simulate
from cellctl.sim.world import Faults
from tests.conftest import PROFILES
from tests.system.sim_args import sim_args

CARD = json.loads((PROFILES / "models" / "student-int8.card.json").read_text())


_args = sim_args


def _rows(tmp_path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        return db.execute("SELECT seq, part_id, verdict, reason, ack_state FROM inspections ORDER BY seq").fetchall()


async def test_sixty_parts_are_all_delivered_and_judged_within_the_model_card(tmp_path):
    with structlog.testing.capture_logs() as logs:
        s = await simulate(_args(tmp_path, 60), tmp_path)
    assert s["parts"] == 60 and s["delivered"] == 60 and s["lost"] == 0
    assert sum(s["verdicts"].values()) == 60
    assert s["defective"] >= 6  # the run exercises the reject path
    good = s["parts"] - s["defective"]
    bounds = CARD["sim_part_level"]
    # within the card's part-level rates (rounded up to whole parts)
    assert s["escapes"] <= math.ceil(bounds["escape_rate"] * s["defective"])
    assert s["false_rejects"] <= math.ceil(bounds["false_reject_rate"] * good) + 1
    assert s["verdicts"]["RECHECK"] == 0  # nothing failed, so nothing to recheck
    assert s["bins"] == {str(b): n for b, n in ((1, s["verdicts"]["PASS"]), (2, s["verdicts"]["REJECT"])) if n}
    rows = _rows(tmp_path)
    assert [r[0] for r in rows] == list(range(1, 61))  # one record per part, sequence without gaps
    assert all(r[4] == "acked" for r in rows)
    assert s["latency_ms"]["p50"] > 0 and s["throughput_per_min"] > 0
    # acquisition of the next part overlaps the analysis of the previous one
    order = [(e["event"], e["seq"]) for e in logs if e["event"] in ("part.acquire", "part.verdict")]
    overlapped = [k for k in range(1, 60) if order.index(("part.acquire", k + 1)) < order.index(("part.verdict", k))]
    assert len(overlapped) > 30
    assert all("part_id" in e and "profile" in e for e in logs if e["event"].startswith("part."))
    # every key of the summary is explained in README's table of the JSON object
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    undocumented = [k for k in s if f"`{k}`" not in readme]
    assert not undocumented, undocumented


async def test_camera_timeout_gives_recheck_and_the_cell_carries_on(tmp_path):
    s = await simulate(
        _args(tmp_path, 3, defect_rate=0.0), tmp_path, faults=Faults(frame_timeouts=1), timeouts={"frame_s": 0.3}
    )
    assert s["delivered"] == 3 and s["lost"] == 0
    assert s["verdicts"]["RECHECK"] == 1 and s["bins"]["3"] == 1
    (recheck,) = [r for r in _rows(tmp_path) if r[2] == "RECHECK"]
    assert recheck[1] == "P00001" and recheck[3].startswith("frame: ")


async def test_incomplete_revolution_gives_recheck(tmp_path):
    s = await simulate(
        _args(tmp_path, 2, defect_rate=0.0), tmp_path, faults=Faults(strip_timeouts=1), timeouts={"strip_s": 0.3}
    )
    assert s["delivered"] == 2 and s["verdicts"]["RECHECK"] == 1
    (recheck,) = [r for r in _rows(tmp_path) if r[2] == "RECHECK"]
    assert recheck[3].startswith("strip: ")


async def test_stalled_turntable_gives_recheck_never_pass(tmp_path):
    s = await simulate(
        _args(tmp_path, 2, defect_rate=0.0), tmp_path, faults=Faults(stage_stall=True), timeouts={"move_s": 0.2}
    )
    assert s["delivered"] == 2 and s["verdicts"] == {"PASS": 0, "REJECT": 0, "RECHECK": 2}
    assert all(r[3].startswith("move: ") for r in _rows(tmp_path))


async def test_dark_images_from_a_dead_light_give_recheck_not_pass(tmp_path):
    s = await simulate(_args(tmp_path, 2, defect_rate=0.0), tmp_path, faults=Faults(light_dead=True))
    assert s["delivered"] == 2 and s["verdicts"]["RECHECK"] == 2
    assert all(r[3].startswith("head@0: no part seen") for r in _rows(tmp_path))


async def test_unknown_profile_from_the_robot_gives_recheck(tmp_path):
    s = await simulate(_args(tmp_path, 1, defect_rate=0.0, profile="m8x40-hex"), tmp_path, robot_profile="m99-unknown")
    assert s["delivered"] == 1 and s["verdicts"]["RECHECK"] == 1
    assert _rows(tmp_path)[0][3] == "profile: unknown profile 'm99-unknown'"


async def test_stepper_alarm_mid_part_gives_recheck_naming_the_alarm(tmp_path):
    with structlog.testing.capture_logs() as logs:
        s = await simulate(
            _args(tmp_path, 1, defect_rate=0.0), tmp_path, faults=Faults(stage_alarm_bits=(1 << 3) | (1 << 8))
        )
    assert s["delivered"] == 1 and s["verdicts"]["RECHECK"] == 1
    (row,) = _rows(tmp_path)
    assert row[3].startswith("move: ") and "over-temperature" in row[3] and "open winding" in row[3]
    faults = [e for e in logs if e["event"] == "acquire.fault"]
    assert faults and faults[0]["part_id"] == "P00001" and "over-temperature" in faults[0]["fault"]


async def test_the_sim_cell_drives_the_serial_drivers_on_ptys(tmp_path):
    with structlog.testing.capture_logs() as logs:
        s = await simulate(_args(tmp_path, 2, defect_rate=0.0), tmp_path)
    assert s["delivered"] == 2
    events = {e["event"] for e in logs}
    assert {"scl.connected", "lighting.connected"} <= events  # the production drivers, not sim://
    # the drivers open stable links (as /dev/serial/by-id) that point at the emulators' ptys
    ports = {e["port"] for e in logs if e["event"] in ("scl.connected", "lighting.connected")}
    assert ports == {str(tmp_path / "scl-drive"), str(tmp_path / "gardasoft")}
    ptys = [e["pty"] for e in logs if e["event"] in ("scl_drive.plugged", "gardasoft_emulator.plugged")]
    assert len(ptys) == 2 and all(p.startswith("/dev/pts/") for p in ptys)


async def test_the_sim_cell_talks_curve_with_keys_made_for_the_run(tmp_path):
    with structlog.testing.capture_logs() as logs:
        s = await simulate(_args(tmp_path, 2, defect_rate=0.0), tmp_path)
    assert s["delivered"] == 2 and s["wrong_part"] == 0 and s["acks"]["acked"] == 2
    assert s["auth_denied"] == 0 and s["handshake_failures"] == 0
    # both ends on CURVE: the cell pinned the run's bridge key, the bridge allows the run's cell key
    (connecting,) = [e for e in logs if e["event"] == "robot_link.connecting"]
    assert connecting["security"] == "curve" and len(connecting["bridge_public_key"]) == 40
    assert {e["security"] for e in logs if e["event"] == "bridge.started"} == {"curve"}
    secret = tmp_path / "sim-cell.key_secret"  # the cell's certificate, zmq.auth format, owner-only
    assert secret.stat().st_mode & 0o777 == 0o600
    assert b"secret-key" in secret.read_bytes()
