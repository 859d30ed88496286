"""``cellctl sim``: the daemon, the bridge and the simulated robot, then a summary.

Everything between them is real: ZeroMQ sockets (ipc) with CURVE (keys made per run), the
production bridge server (``sim/bridge.py`` subclasses it for the link faults), SQLite
records, onnxruntime on the committed INT8 model, the daemon's own pipeline and outbox, the
production serial drivers on pty emulators. With ``--via-bridge`` the bridge talks EKI over
TCP to the simulated KRC (``sim/krc.py``) through the production KUKA client. The daemon runs
in this process, or with ``--faults daemon-kill`` as a child process (sim/daemon.py,
supervised by sim/supervisor.py) that can be killed and restarted. ``--faults`` injects
named faults (sim/faults.py, sim/injector.py, sim/bridge.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import zmq
import zmq.auth

from cellctl.bridge.auth import BridgeAuth
from cellctl.bridge.robot import RobotSide
from cellctl.captures.capturer import MB
from cellctl.captures.store import captures as stored_captures
from cellctl.captures.store import folder_bytes
from cellctl.commands.common import embedded_config, report
from cellctl.config import ConfigError, Problem, records_problem
from cellctl.logs import configure
from cellctl.outcome import Outcome
from cellctl.pipeline.publish import guard_findings
from cellctl.sim import link_figures
from cellctl.sim.bridge import SimBridge
from cellctl.sim.conditions import DEFAULT, PRESETS
from cellctl.sim.daemon import sim_cell
from cellctl.sim.emulated import serve_emulated
from cellctl.sim.faults import (
    HARMLESS_TO_INSPECTION,
    LINK_FAULTS,
    PROCESS_FAULTS,
    RECORDS_FAULTS,
    VIA_BRIDGE_FAULTS,
    FaultNameError,
    FaultPlan,
    min_parts,
    parse_fault_names,
    plan_faults,
)
from cellctl.sim.injector import FaultInjector
from cellctl.sim.part import SimPart
from cellctl.sim.robot import CheckedRobot, SimRobot
from cellctl.sim.supervisor import ChildDaemon
from cellctl.sim.world import WORLD_KEY, Faults, SimClock, SimWorld
from cellctl.text import printable

log = structlog.get_logger("cellctl.sim.run")

OUTCOMES = ("PASS", "REJECT", "RECHECK", "held", "lost")
EXIT_INTERRUPTED = 130


def _durable_passes(records: Path) -> set[tuple[int, str]] | None:
    """(seq, part_id) of every PASS in the records file; None if it cannot be read."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{records}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT seq, part_id FROM inspections WHERE verdict = 'PASS'").fetchall()
    except sqlite3.Error:
        return None
    return {(int(seq), str(part_id)) for seq, part_id in rows}


def fault_figures(robot: SimRobot, records: Path) -> tuple[int, dict[str, Any]]:
    """``passed_uninspected`` and the per-fault outcomes. A PASS is uninspected when a fault that
    spoils the inspection struck its part; for a records fault, when no durable record holds it."""
    durable = _durable_passes(records) if any(f in RECORDS_FAULTS for f in robot.faults.values()) else set()
    uninspected = 0
    per_fault: dict[str, Any] = {}
    for part_id, fault in robot.faults.items():
        entry = per_fault.setdefault(fault, {"injected": 0, "outcomes": dict.fromkeys(OUTCOMES, 0)})
        entry["injected"] += 1
        s = robot.sorted.get(part_id)
        entry["outcomes"][s.verdict if s is not None else "held" if part_id in robot.held else "lost"] += 1
        if s is None or s.verdict != "PASS" or fault in HARMLESS_TO_INSPECTION:
            continue
        if fault in RECORDS_FAULTS and durable is not None and (s.seq, part_id) in durable:
            continue  # the write that failed was not this verdict's: it is on record
        uninspected += 1
    return uninspected, per_fault


def guard_figures(records: Path) -> dict[str, int | None]:
    """``out_of_distribution_parts`` and ``not_located_parts`` as the records' evidence tells
    them (the daemon's own count, ``guard_findings``, whether it ran here or as a child); None
    if the records cannot be read."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{records}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT verdict, evidence FROM inspections").fetchall()
    except sqlite3.Error:
        return {"out_of_distribution_parts": None, "not_located_parts": None}
    found = Counter[str]()
    for outcome, evidence in rows:
        try:
            value, verdict = json.loads(evidence), Outcome(outcome)
        except (TypeError, ValueError):
            continue  # nothing readable to count
        found.update(guard_findings(value if isinstance(value, dict) else {}, verdict))
    return {"out_of_distribution_parts": found["ood_parts"], "not_located_parts": found["not_located"]}


def summarize(robot: SimRobot, elapsed_s: float, meta: dict[str, Any]) -> dict[str, Any]:
    sorted_ = robot.sorted.values()
    # a run stopped by a signal may leave an announced part the cell never took: it waits in
    # the fixture (the next start is told it again), it is not lost
    waiting = robot.in_fixture if meta.get("interrupted") else None
    in_fixture = int(waiting is not None and waiting not in robot.sorted and waiting not in robot.held)
    verdicts = {k: sum(1 for s in sorted_ if s.verdict == k) for k in ("PASS", "REJECT", "RECHECK")}
    latencies = np.array([s.latency_ms for s in sorted_]) if robot.sorted else np.zeros(1)
    return {
        "parts": len(robot.fed),
        "verdicts": verdicts,
        "delivered": len(robot.sorted),  # sorted into a bin (refused-ack parts are "held")
        "lost": len(robot.fed) - len(robot.sorted) - len(robot.held) - in_fixture,
        "in_fixture": in_fixture,
        "defective": sum(1 for p in robot.fed.values() if p.defective),
        "escapes": sum(1 for s in sorted_ if s.defective and s.verdict == "PASS"),
        "false_rejects": sum(1 for s in sorted_ if not s.defective and s.verdict == "REJECT"),
        "rechecks": verdicts["RECHECK"],
        "bins": {str(k): v for k, v in sorted(robot.bins.items())},
        "reannounced": robot.reannounced,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 1),
            "p99": round(float(np.percentile(latencies, 99)), 1),
            "max": round(float(latencies.max()), 1),
        },
        "throughput_per_min": round(len(robot.sorted) / elapsed_s * 60.0, 1) if elapsed_s > 0 else 0.0,
        "elapsed_s": round(elapsed_s, 2),
        **meta,
    }


def _draw_progress(robot: SimRobot, total: int) -> None:
    counts = {k: 0 for k in ("PASS", "REJECT", "RECHECK")}
    for s in robot.sorted.values():
        counts[s.verdict] += 1
    sys.stderr.write(
        f"\r  {len(robot.sorted):>5}/{total} inspected   PASS {counts['PASS']:<5} "
        f"REJECT {counts['REJECT']:<4} RECHECK {counts['RECHECK']:<4}"
    )
    sys.stderr.flush()


async def _progress(robot: SimRobot, total: int) -> None:
    try:
        while True:
            _draw_progress(robot, total)
            await asyncio.sleep(0.25)
    finally:
        _draw_progress(robot, total)  # the final count, not the last tick's


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class _LocalCell:
    """The robot's ``CellSide`` when the daemon runs in this process."""

    def __init__(self, injector: FaultInjector) -> None:
        self._injector = injector

    async def place(self, part: SimPart | None, fault: str | None) -> None:
        await self._injector.place(part, fault)


@contextlib.contextmanager
def _interruptible(stop: asyncio.Event, interrupted: list[bool]) -> Iterator[None]:
    """SIGINT/SIGTERM end the run with the partial summary (the cell, while it runs, installs
    its own handlers for the same signals: they stop it, and the run ends too)."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        interrupted.append(True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until(
    robot: SimRobot,
    bridge: SimBridge,
    records: Path,
    budget_s: float,
    stop: asyncio.Event,
    gave_up: asyncio.Event | None,
) -> bool:
    """Wait until every part is sorted (or held) and the link faults under way are over (a late
    ack sent, the bridge back), ``stop`` is set, the child daemon gave up or the budget is
    spent; True if the budget ran out."""
    waits = [asyncio.create_task(_finished(robot, bridge, records)), asyncio.create_task(stop.wait())]
    if gave_up is not None:
        waits.append(asyncio.create_task(gave_up.wait()))
    done, pending = await asyncio.wait(waits, timeout=budget_s, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return not done


async def _finished(robot: SimRobot, bridge: SimBridge, records: Path) -> None:
    await robot.done.wait()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bridge.settle(), SETTLE_S)
    # the last acks (a late one just sent) reach the records before the cell is stopped: an
    # expired verdict is not in flight, so the cell's drain would not wait for its ack
    deadline = time.monotonic() + ACKS_SETTLE_S
    while time.monotonic() < deadline:
        states = await asyncio.to_thread(link_figures.ack_states, records)
        if not states.get("pending") and not states.get("expired"):
            return
        await asyncio.sleep(0.1)


# The sim's link: heartbeats and deadline short enough that outages and late acks cost seconds,
# not minutes (production: 1 s, 3 beats, 30 s); the bridge beats at the same period.
SIM_LINK: dict[str, Any] = {
    "heartbeat_s": 0.5,
    "missed_beats": 4,
    "delivery_deadline_s": 4.0,
    "ack_timeout_s": 1.0,
    "ack_backoff_max_s": 2.0,
}
SETTLE_S = 60.0  # after the last part: faults still under way (a late ack, the bridge coming back)
ACKS_SETTLE_S = 15.0  # then until the records hold no verdict still waiting for its ack
KRC_BUFFER_LIMIT = 16  # the EKI BUFFERING Limit of the simulated KRC, and what the KUKA client respects


def _run_keys(workdir: Path) -> tuple[bytes, bytes, bytes, Path]:
    """This run's CURVE keys: the bridge's pair (in memory) and the cell's certificate, written
    in zmq.auth format into the workdir for the daemon (in process or child) to read."""
    bridge_public, bridge_secret = zmq.curve_keypair()
    _, secret_file = zmq.auth.create_certificates(str(workdir), "sim-cell")
    cell_public, _ = zmq.auth.load_certificate(secret_file)
    Path(secret_file).chmod(0o600)
    return bridge_public, bridge_secret, cell_public, Path(secret_file)


async def simulate(
    args: argparse.Namespace,
    workdir: Path,
    *,
    faults: Faults | None = None,
    timeouts: dict[str, float] | None = None,
    robot_profile: str | None = None,
    plan: FaultPlan | None = None,
) -> dict[str, Any]:
    """Run the cell against the simulated robot. For tests: ``faults`` to set in the world for
    the whole run, step ``timeouts`` to shorten, ``robot_profile`` for the robot to request
    instead, ``plan`` to place named faults on chosen parts (else from ``args.faults``)."""
    config_path = args.config or embedded_config()
    endpoint = f"ipc://{workdir / 'robot.sock'}"
    bridge_public, bridge_secret, cell_public, secret_file = _run_keys(workdir)
    link = {
        **SIM_LINK,
        "security": "curve",
        "bridge_public_key": bridge_public.decode(),
        "secret_key_file": str(secret_file),
    }
    capture_settings = _captures(args)
    cell_cfg, profiles = sim_cell(config_path, endpoint, timeouts, link, capture_settings)
    profile = args.profile or cell_cfg.default_profile
    if profile not in profiles:
        raise ConfigError(
            [
                Problem(
                    str(config_path),
                    0,
                    "--profile",
                    f"no profile {profile!r}; the cell has: {', '.join(sorted(profiles))}",
                )
            ]
        )
    if plan is None:
        plan = plan_faults(parse_fault_names(getattr(args, "faults", "") or ""), args.parts, args.seed)
    via_bridge = bool(getattr(args, "via_bridge", False))
    child = bool(PROCESS_FAULTS & set(plan.names))
    others = sorted(p for p in profiles if p != profile)
    records = args.records or workdir / "records.db"
    clock = SimClock(args.time_scale)
    # a stalled cell must end the run, not hang CI: generous per-part and per-fault allowance
    budget_s = 120.0 + args.parts * (2.0 + 6.0 * args.time_scale) + 20.0 * len(plan.at)
    stop, interrupted = asyncio.Event(), list[bool]()
    meta: dict[str, Any] = {
        "profile": profile,
        "seed": args.seed,
        "defect_rate": args.defect_rate,
        "conditions": getattr(args, "conditions", None) or DEFAULT.name,
        "time_scale": args.time_scale,
        "records": str(args.records) if args.records else None,
        "faults_requested": list(plan.names),
        "via_bridge": via_bridge,
    }
    cell_view: dict[str, Any] = {}  # the cell's view of its link
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_interruptible(stop, interrupted))

        ins = profiles[profile].profile.inspection

        async def start_robot(side: Any) -> tuple[SimRobot, SimBridge]:
            robot = SimRobot(
                side,
                clock,
                profiles[profile].profile.geometry,
                robot_profile or profile,
                args.parts,
                args.defect_rate,
                args.seed,
                plan=plan,
                other_profile=others[0] if others else None,
                conditions=PRESETS[args.conditions] if getattr(args, "conditions", None) else DEFAULT,
                min_indication=(ins.min_indication_length_mm, ins.min_indication_contrast),
            )
            bridge = await _start_bridge(
                stack, endpoint, robot, via_bridge, cell_cfg.cell_id, (bridge_public, bridge_secret, cell_public), args
            )
            _show_progress(stack, robot, args)
            return robot, bridge

        if child:
            log_path = _daemon_log(args, workdir)
            spec = {
                "config": str(config_path),
                "records": str(records),
                "endpoint": endpoint,
                "seed": args.seed,
                "time_scale": args.time_scale,
                "timeouts": timeouts or {},
                "link": link,
                "captures": capture_settings,
                "link_dir": str(workdir),
                "log": str(log_path),
                "log_level": getattr(args, "log_level", None) or "info",
            }
            (workdir / "daemon.json").write_text(json.dumps(spec))
            daemon = ChildDaemon(workdir / "daemon.json", workdir / "daemon.stderr")
            robot, bridge = await start_robot(daemon)
            t0 = time.monotonic()
            await daemon.start()
            stack.push_async_callback(daemon.stop)
            timed_out = await _until(robot, bridge, records, budget_s, stop, daemon.gave_up)
            await daemon.stop()
            elapsed = time.monotonic() - t0
            cell_view = link_figures.from_daemon_log(log_path)
            meta.update(crashes=daemon.crashes, restarts=daemon.restarts, daemon_log=str(log_path), loop_lag_ms=None)
        else:
            from cellctl.app import Cell  # the composition root, as `cellctl run` builds it

            world = SimWorld(
                seed=args.seed,
                time_scale=args.time_scale,
                encoder_counts_per_rev=cell_cfg.devices.stage.encoder_counts_per_rev,
            )
            if faults is not None:
                world.faults = faults
            emulators: dict[str, Any] = {}
            cell_cfg = await serve_emulated(cell_cfg, world, stack, link_dir=workdir, emulators=emulators)
            injector = FaultInjector(world, emulators)
            stack.push_async_callback(injector.close)
            robot, bridge = await start_robot(_LocalCell(injector))
            cell = Cell(
                cell_cfg, profiles, records, context={WORLD_KEY: world}, hooks=injector.hooks(), config_path=config_path
            )
            crashes = 0
            t0 = time.monotonic()
            watcher = asyncio.create_task(_until(robot, bridge, records, budget_s, stop, None))
            watcher.add_done_callback(lambda _: stop.set())
            try:
                with cell.signals(stop):
                    async with cell:
                        injector.attach(cell)
                        await cell.run(stop)
            except Exception as exc:  # the daemon died: counted and reported, the summary still follows
                crashes = 1
                stop.set()
                # one line; the traceback only when asked for (`--log-level debug`)
                debug = getattr(args, "log_level", None) == "debug"
                log.error("sim.daemon_crashed", error=" ".join(f"{type(exc).__name__}: {exc}".split()), exc_info=debug)
            elapsed = time.monotonic() - t0
            timed_out = await watcher
            cell_view = link_figures.from_cell(cell)
            meta.update(crashes=crashes, restarts=0, loop_lag_ms=cell.loop_lag.summary())
        bridge_health = bridge.health()
    if not robot.done.is_set() and not timed_out and not meta["crashes"]:
        interrupted.append(True)  # the cell's own signal handler stopped it (a crash is no interruption)
    uninspected, per_fault = fault_figures(robot, records)
    meta.update(passed_uninspected=uninspected, faults=per_fault, interrupted=bool(interrupted), timed_out=timed_out)
    meta.update(guard_figures(records))
    if cell_cfg.storage.captures is not None and capture_settings is not None:
        meta["captures"] = capture_figures(Path(capture_settings["dir"]), cell_cfg.storage.captures.budget_mb)
    meta.update(link_figures.link_summary(robot, bridge, bridge_health, cell_view, records))
    return summarize(robot, elapsed, meta)


def _captures(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--captures DIR [--captures-budget-mb MB]`` as storage.captures fields, or None."""
    folder = getattr(args, "captures", None)
    if folder is None:
        return None
    budget = getattr(args, "captures_budget_mb", None)
    return {"dir": str(Path(folder).resolve()), **({"budget_mb": budget} if budget is not None else {})}


def capture_figures(root: Path, budget_mb: float) -> dict[str, Any]:
    """What the store holds after the run, read from disk (the daemon may have been a child)."""
    kept = list(stored_captures(root))
    size = sum(folder_bytes(c) for c in kept)
    return {"dir": str(root), "parts": len(kept), "bytes": size, "budget_bytes": int(budget_mb * MB)}


async def _start_bridge(
    stack: contextlib.AsyncExitStack,
    endpoint: str,
    robot: SimRobot,
    via_bridge: bool,
    cell_id: str,
    keys: tuple[bytes, bytes, bytes],
    args: argparse.Namespace,
) -> SimBridge:
    """The bridge on ``endpoint`` with this run's keys: the robot plugged in directly, or (with
    ``--via-bridge``) the KUKA client in front of the simulated KRC that wraps the robot."""
    bridge_public, bridge_secret, cell_public = keys
    side: RobotSide = robot
    krc: Any = None
    if via_bridge:
        from cellctl.bridge.kuka import KukaRobot
        from cellctl.sim.krc import SimKrc

        krc = SimKrc(robot, "127.0.0.1", 0, KRC_BUFFER_LIMIT)
        await krc.start()
        stack.push_async_callback(krc.close)
        kuka = KukaRobot("127.0.0.1", krc.port, buffer_limit=KRC_BUFFER_LIMIT)
        await kuka.start()
        stack.push_async_callback(kuka.close)
        side = CheckedRobot(kuka, robot)
    bridge = SimBridge(
        endpoint,
        side,
        robot,
        delivery_deadline_s=SIM_LINK["delivery_deadline_s"],
        seed=args.seed,
        bridge_public_key=bridge_public,
        krc=krc,
        auth=BridgeAuth.from_keys(bridge_public, bridge_secret, {cell_id: cell_public}),
        heartbeat_s=SIM_LINK["heartbeat_s"],
        missed_beats=SIM_LINK["missed_beats"],
    )
    await bridge.start()
    stack.push_async_callback(bridge.close_all)
    return bridge


def _daemon_log(args: argparse.Namespace, workdir: Path) -> Path:
    """The child daemon's JSON-lines log: beside ``--records`` if given (kept), else in the workdir."""
    if args.records:
        return Path(args.records).with_name(Path(args.records).name + ".daemon.jsonl")
    return workdir / "daemon.jsonl"


def _show_progress(stack: contextlib.AsyncExitStack, robot: SimRobot, args: argparse.Namespace) -> None:
    if sys.stderr.isatty() and not args.json:
        stack.callback(sys.stderr.write, "\n")  # runs after the progress line stopped
        stack.push_async_callback(_cancel, asyncio.create_task(_progress(robot, args.parts)))


def print_summary(s: dict[str, Any]) -> None:
    v = s["verdicts"]
    print(
        f"Simulated cell, profile {s['profile']}, seed {s['seed']}, defect rate {s['defect_rate']:g}, "
        f"time scale {s['time_scale']:g}"
    )
    print(f"  parts inspected   {s['parts']} ({s['defective']} defective)")
    print(f"  verdicts          PASS {v['PASS']}   REJECT {v['REJECT']}   RECHECK {v['RECHECK']}")
    print(
        f"  delivered         {s['delivered']} sorted by the robot, {s['held']} held (robot refused), {s['lost']} lost"
    )
    print(f"  escapes           {s['escapes']} defective parts judged PASS")
    print(f"  false rejects     {s['false_rejects']} good parts judged REJECT")
    lat = s["latency_ms"]
    print(f"  latency           p50 {lat['p50']} ms   p99 {lat['p99']} ms   (part trigger to verdict published)")
    print(f"  throughput        {s['throughput_per_min']} parts/min over {s['elapsed_s']} s")
    lag = s["loop_lag_ms"]
    if lag is not None:  # None: the daemon ran in a child process
        print(f"  event-loop lag    p99 {lag['p99']} ms   max {lag['max']} ms")
    acks = s["acks"]
    print(
        f"  robot link        {s['wrong_part']} verdicts on the wrong part, {s['duplicates_acted']} acted on twice; "
        f"acked {acks.get('acked', 0)}, late {acks.get('acked_late', 0)}, refused {acks.get('refused', 0)}"
    )
    if s["outages"] or s["refused"] or s["auth_denied"] or set(LINK_FAULTS) & set(s["faults_requested"]):
        refused = ", ".join(f"{k} {v}" for k, v in s["refused"].items()) or "none"
        print(
            f"  link faults       down {s['link_down_s']} s over {s['outages']} bridge outages "
            f"(production resumed: {'yes' if s['production_resumed'] else 'NO'}); "
            f"{s['auth_denied']} peers denied; refused by the cell: {refused}"
        )
    if s["faults"] or s["faults_requested"]:
        print(f"  passed uninspected {s['passed_uninspected']} PASS verdicts on parts a fault spoilt")
        print(f"  daemon            {s['restarts']} restarts after injected kills, {s['crashes']} crashes")
        for name, f in s["faults"].items():
            o = f["outcomes"]
            print(
                f"  fault {name:<18} injected {f['injected']:<3} PASS {o['PASS']} REJECT {o['REJECT']} "
                f"RECHECK {o['RECHECK']} held {o['held']} lost {o['lost']}"
            )
    if s.get("captures"):
        c = s["captures"]
        print(
            f"  captures          {c['parts']} parts kept in {c['dir']}, {c['bytes'] / 1e6:.1f} of "
            f"{c['budget_bytes'] / 1e6:g} MB (`cellctl captures export`)"
        )
    if s["interrupted"]:
        print("  interrupted       the run was stopped early (partial figures)")


def exit_code(s: dict[str, Any]) -> int:
    """130 interrupted; 1 if a part was lost, a PASS was uninspected, the daemon crashed, a
    verdict went to the wrong part, something was acted on twice, or production did not resume
    after an outage; else 0."""
    if s["interrupted"]:
        return EXIT_INTERRUPTED
    clean = s["lost"] == 0 and s["passed_uninspected"] == 0 and s["crashes"] == 0
    linked = s["wrong_part"] == 0 and s["duplicates_acted"] == 0 and not s["wrong_bin"] and s["production_resumed"]
    return 0 if clean and linked else 1


def main(args: argparse.Namespace) -> int:
    if args.export is not None:
        from cellctl.sim.export import export

        configure("auto", args.log_level or "info")
        counts = export(args)
        print(json.dumps(counts) if args.json else f"wrote {counts} to {args.export}")
        return 0
    try:
        names = parse_fault_names(getattr(args, "faults", "") or "")
    except FaultNameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    needing = [n for n in names if n in VIA_BRIDGE_FAULTS]
    if needing and not getattr(args, "via_bridge", False):
        print(f"error: fault {needing[0]} needs --via-bridge (it acts on the EKI link to the KRC)", file=sys.stderr)
        return 2
    if args.parts < min_parts(names):
        print(
            f"error: --parts {args.parts} is too few for {len(names)} faults "
            f"(need at least {min_parts(names)}: warm-up parts first, a part after the last outage)",
            file=sys.stderr,
        )
        return 2
    if args.records is not None:  # a file the records would refuse stops the run before it starts
        problem = records_problem(Path(args.records))
        if problem is not None:
            print(f"error: argument --records: {printable(problem)}", file=sys.stderr)
            return 2
    # on a terminal the progress line is the display; per-part events need --log-level info
    configure("auto", args.log_level or ("warning" if sys.stderr.isatty() else "info"))
    try:
        with tempfile.TemporaryDirectory(prefix="cellctl-sim-") as tmp:
            summary = asyncio.run(simulate(args, Path(tmp)))
    except ConfigError as exc:
        report(exc)
        return 2
    except KeyboardInterrupt:  # a Ctrl-C outside the run's own handler (start-up, shut-down)
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return exit_code(summary)
