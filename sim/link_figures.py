"""The summary's robot-link figures of a ``cellctl sim`` run: what the robot and the bridge saw,
what the cell saw of its link (its health in process, its JSON log as a child), and how the
cell's records say each verdict ended."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from cellctl.outcome import BIN_OF, Outcome
from cellctl.sim.bridge import SimBridge
from cellctl.sim.robot import SimRobot


def from_cell(cell: Any) -> dict[str, Any]:
    """The in-process cell's view of its link (the link's and the outbox's health), after the run."""
    link = getattr(cell, "link", None)
    outbox = getattr(cell, "outbox", None)
    health = link.health() if link is not None and hasattr(link, "health") else {}
    boxed = outbox.health() if outbox is not None and hasattr(outbox, "health") else {}
    return {
        "link_down_s": float(health.get("down_s_total", 0.0)),
        "handshake_failures": int(health.get("handshake_failures", 0)),
        "acks_rejected": dict(boxed.get("acks_rejected", {})),  # the outbox judges the acks
    }


def from_daemon_log(path: Path) -> dict[str, Any]:
    """The child daemon's view of its link, from its JSON log: outages (``robot_link.up`` with
    ``down_s``), handshake failures, rejected acks (``robot_link.ack_rejected`` by reason)."""
    down_s, rejected = 0.0, Counter[str]()
    handshakes: list[int] = [0]  # per daemon process: the last cumulative count it logged
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        name = event.get("event")
        if name == "robot_link.up" and isinstance(event.get("down_s"), int | float):
            down_s += float(event["down_s"])
        elif name == "robot_link.connecting":  # a daemon process begins its link
            handshakes.append(0)
        elif name == "robot_link.handshake_failed":
            # logged once per 10 failures of a streak, each line with the process's total so far
            failures = event.get("failures")
            handshakes[-1] = int(failures) if isinstance(failures, int) else handshakes[-1] + 1
        elif name == "robot_link.ack_rejected":
            rejected[str(event.get("reason"))] += 1
    return {"link_down_s": down_s, "handshake_failures": sum(handshakes), "acks_rejected": dict(rejected)}


def ack_states(records: Path) -> dict[str, int]:
    """How the cell's records say each verdict ended: acked, acked_late, refused, pending, expired."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{records}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT ack_state, COUNT(*) FROM inspections GROUP BY ack_state").fetchall()
    except sqlite3.Error:
        return {}
    return {str(state): int(n) for state, n in rows}


def wrong_bins(robot: SimRobot, records: Path) -> int | None:
    """Parts the robot put in a bin other than the one their recorded verdict names (None if
    the records cannot be read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{records}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT part_id, verdict FROM inspections ORDER BY seq").fetchall()
    except sqlite3.Error:
        return None
    named = {str(part_id): int(BIN_OF[Outcome(verdict)]) for part_id, verdict in rows}
    return sum(1 for p, s in robot.sorted.items() if named.get(p) != s.bin)


def link_summary(
    robot: SimRobot, bridge: SimBridge, health: dict[str, Any], cell_view: dict[str, Any], records: Path
) -> dict[str, Any]:
    # production resumed after an outage: a part announced after the bridge was back, and judged
    resumed = [
        any(t > back and (p in robot.sorted or p in robot.held) for p, t in robot.announced_at.items())
        for _, back in bridge.outages
    ]
    rogues = bridge.rogues
    return {
        "wrong_part": robot.wrong_part,
        "duplicates_acted": robot.duplicates_acted,
        "wrong_bin": wrong_bins(robot, records),
        "held": len(robot.held),
        "refused": dict(sorted(robot.refusals.items())),
        "acks": {**ack_states(records), "rejected": cell_view.get("acks_rejected", {})},
        "auth_denied": int(health.get("auth_denied", 0) or 0),
        "bridge_handshake_failed": health.get("handshake_failed", {}),
        "link_down_s": round(float(cell_view.get("link_down_s", 0.0)), 2),
        "handshake_failures": cell_view.get("handshake_failures", 0),
        "outages": len(bridge.outages),
        "production_resumed": all(resumed),
        "rogues": {
            "runs": len(rogues),
            "heard": sum(int(r.get("received", 0)) for r in rogues),
            "handshakes": sum(int(r.get("handshakes", 0)) for r in rogues),
            "failed": sum(1 for r in rogues if r.get("returncode") != 0 or "error" in r),
        },
        "flood_sent": bridge.flood_sent,
        "krc": bridge.krc.health() if bridge.krc is not None else None,
        "bridge_duplicates": int(health.get("duplicates", 0) or 0),
    }
