"""``cellctl sim --faults``: each robot-link fault alone, end to end, on a short run.

The real simulated cell at time scale 0 with the production bridge server on real ZeroMQ
sockets with CURVE (per-run keys), the rogue processes as real child processes, and with
``--via-bridge`` the KUKA client over TCP to the simulated KRC. The fault strikes part 4;
part 5 comes after it (an outage is never on the last part). Whatever the fault: every part
is sorted once (or held, for refused-ack), none is lost or put in the wrong bin, no verdict
lands on a part other than the one imaged, nothing is acted on twice, and the struck part
shows the fault's own outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cellctl.sim.faults import LINK_FAULTS, VIA_BRIDGE_FAULTS, FaultPlan, min_parts, plan_faults
from cellctl.sim.run import exit_code, simulate
from tests.system.sim_args import sim_args

PARTS = 5
STRUCK = 4
STRUCK_ID = f"P{STRUCK:05d}"


def _args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    return sim_args(tmp_path, PARTS, seed=11, defect_rate=0.0, **kw)


async def _run(tmp_path: Path, fault: str, **kw: object) -> dict[str, Any]:
    s = await simulate(_args(tmp_path, **kw), tmp_path, plan=FaultPlan({STRUCK: fault}))
    held = 1 if fault == "refused-ack" else 0
    assert s["parts"] == PARTS and s["delivered"] + s["held"] == PARTS and s["held"] == held, s
    assert s["lost"] == 0 and s["passed_uninspected"] == 0 and s["crashes"] == 0, s
    assert s["wrong_part"] == 0 and s["duplicates_acted"] == 0 and s["wrong_bin"] == 0, s
    assert s["production_resumed"] and not s["timed_out"] and not s["interrupted"], s
    assert s["faults"][fault]["injected"] == 1
    assert sum(s["bins"].values()) == PARTS - held
    assert exit_code(s) == 0
    return s


def _records(tmp_path: Path) -> dict[str, tuple[int, str, str]]:
    """part_id -> (seq, verdict, ack_state), one row per part judged."""
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        rows = db.execute("SELECT seq, part_id, verdict, ack_state FROM inspections ORDER BY seq").fetchall()
    assert len({r[1] for r in rows}) == len(rows), rows  # no part judged twice
    return {r[1]: (r[0], r[2], r[3]) for r in rows}


def _only_real_parts(tmp_path: Path) -> None:
    """Phantom, flood and rogue parts were never inspected: the records hold P00001..P00005."""
    assert sorted(_records(tmp_path)) == [f"P{n:05d}" for n in range(1, PARTS + 1)]


# --- the plan and the command line ---------------------------------------------------------


def test_an_outage_is_never_planned_on_the_last_part():
    for seed in range(40):
        plan = plan_faults(("bridge-down", "rogue-bridge", "bridge-restart", "late-ack"), 8, seed)
        assert plan.at.get(8) not in ("bridge-down", "rogue-bridge", "bridge-restart")
    assert min_parts(("bridge-down",)) == 5 and min_parts(("late-ack",)) == 4


def test_a_krc_fault_without_via_bridge_is_a_usage_error():
    done = subprocess.run(
        [sys.executable, "-m", "cellctl", "sim", "--faults", "late-ack,krc-garbage"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: fault krc-garbage needs --via-bridge (it acts on the EKI link to the KRC)"


# --- the part message -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reasons"),
    [
        ("duplicate-part", {"already_answered"}),
        ("unsolicited-part", {"no_open_request"}),
        ("multipart", {"extra_frames"}),
        # the previous request was answered: the cell may say so, or call it stale
        ("stale-request", {"already_answered", "stale_request"}),
    ],
)
async def test_a_part_that_answers_no_open_request_is_refused_and_never_inspected(tmp_path, fault, reasons):
    s = await _run(tmp_path, fault)
    (reason,) = s["refused"]  # the bridge got the cell's refusal, naming why
    assert reason in reasons and s["refused"][reason] == 1
    assert s["acks"]["acked"] == PARTS
    _only_real_parts(tmp_path)


async def test_a_flood_of_parts_and_oversized_frames_is_refused_without_a_phantom_inspection(tmp_path):
    s = await _run(tmp_path, "flood")
    assert s["flood_sent"] == 2020
    assert s["refused"]["oversized"] == 20
    # every flood part refused (a few refusals may be dropped at the cell's send HWM, by design)
    assert 1900 <= s["refused"].get("no_open_request", 0) + s["refused"].get("stale_request", 0) <= 2000
    _only_real_parts(tmp_path)


# --- the ack ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["forged-ack", "wrong-cell-ack", "duplicate-ack"])
async def test_an_ack_that_does_not_match_is_rejected_and_the_real_one_counts(tmp_path, fault):
    s = await _run(tmp_path, fault)
    assert s["acks"]["acked"] == PARTS
    assert sum(s["acks"]["rejected"].values()) == 1, s["acks"]
    assert _records(tmp_path)[STRUCK_ID][2] == "acked"


async def test_a_refused_ack_holds_the_part_out_of_every_bin_and_the_cell_records_it(tmp_path):
    s = await _run(tmp_path, "refused-ack")
    assert s["faults"]["refused-ack"]["outcomes"]["held"] == 1
    assert s["acks"]["refused"] == 1 and s["acks"]["acked"] == PARTS - 1
    assert _records(tmp_path)[STRUCK_ID][2] == "refused"


async def test_a_late_ack_after_the_deadline_is_recorded_acked_late(tmp_path):
    s = await _run(tmp_path, "late-ack")
    assert s["acks"]["acked_late"] == 1 and s["acks"]["acked"] == PARTS - 1
    assert _records(tmp_path)[STRUCK_ID][2] == "acked_late"


# --- outages ---------------------------------------------------------------------------------


async def test_bridge_down_past_the_deadline_expires_the_verdict_then_it_is_acked_late(tmp_path):
    s = await _run(tmp_path, "bridge-down")
    assert s["outages"] == 1 and s["link_down_s"] > 1.0
    assert _records(tmp_path)[STRUCK_ID][2] == "acked_late"  # acted on once, acknowledged from dedupe
    assert s["acks"]["acked_late"] == 1


async def test_a_bridge_restart_loses_the_part_message_and_the_cell_asks_again(tmp_path):
    s = await _run(tmp_path, "bridge-restart")
    assert s["outages"] == 1
    assert s["reannounced"] >= 1  # the part in the fixture, announced again for the new request
    assert s["acks"]["acked"] == PARTS


# --- processes without the keys --------------------------------------------------------------


async def test_a_rogue_bound_to_the_endpoint_is_refused_by_the_cell_and_hears_nothing(tmp_path):
    s = await _run(tmp_path, "rogue-bridge")
    assert s["outages"] == 1
    assert s["handshake_failures"] >= 1  # the cell noticed a peer without the pinned key
    assert s["rogues"] == {"runs": 1, "heard": 0, "handshakes": 0, "failed": 0}
    _only_real_parts(tmp_path)


async def test_forged_verdicts_from_processes_without_the_keys_have_no_effect(tmp_path):
    s = await _run(tmp_path, "forged-verdict")
    assert s["auth_denied"] >= 1  # the one with a key pair of its own, denied by ZAP
    assert s["rogues"] == {"runs": 2, "heard": 0, "handshakes": 0, "failed": 0}
    assert s["acks"]["acked"] == PARTS  # only the cell's own verdicts acted on
    _only_real_parts(tmp_path)


# --- the EKI link to the KRC -----------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(VIA_BRIDGE_FAULTS))
async def test_krc_faults_via_the_bridge_sort_every_part_once(tmp_path, fault):
    s = await _run(tmp_path, fault, via_bridge=True)
    assert s["via_bridge"] and s["krc"] is not None
    krc = s["krc"]
    assert {str(k): v for k, v in krc["sorted_bins"].items()} == s["bins"]  # the KRC's own bins
    assert krc["dropped"] == 0  # the KUKA client kept within the EKI buffer limit
    if fault == "krc-disconnect":
        assert krc["disconnects"] == 1
    else:
        assert krc["garbage_sent"] == 5


def test_every_link_fault_is_tested_here():
    tested = {
        "duplicate-part",
        "unsolicited-part",
        "multipart",
        "stale-request",
        "flood",
        "forged-ack",
        "wrong-cell-ack",
        "duplicate-ack",
        "refused-ack",
        "late-ack",
        "bridge-down",
        "bridge-restart",
        "rogue-bridge",
        "forged-verdict",
        *VIA_BRIDGE_FAULTS,
    }
    assert tested == set(LINK_FAULTS)
