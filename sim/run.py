"""``cellctl sim``: the daemon and the simulated robot in one process, then a summary.

Everything between them is real: ZeroMQ sockets (ipc), SQLite records, onnxruntime on the
committed INT8 model, the daemon's own cycle, analysis and delivery code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cellctl.app import Cell
from cellctl.commands.common import embedded_config, report
from cellctl.config import ConfigError, Problem, load_cell, load_profiles
from cellctl.logs import configure
from cellctl.sim.emulated import serve_emulated
from cellctl.sim.robot import SimRobot
from cellctl.sim.world import WORLD_KEY, Faults, SimWorld


def summarize(robot: SimRobot, elapsed_s: float, meta: dict[str, Any]) -> dict[str, Any]:
    sorted_ = robot.sorted.values()
    verdicts = {k: sum(1 for s in sorted_ if s.verdict == k) for k in ("PASS", "REJECT", "RECHECK")}
    latencies = np.array([s.latency_ms for s in sorted_]) if robot.sorted else np.zeros(1)
    return {
        "parts": len(robot.fed),
        "verdicts": verdicts,
        "delivered": len(robot.sorted),
        "lost": len(robot.fed) - len(robot.sorted),
        "defective": sum(1 for p in robot.fed.values() if p.defective),
        "escapes": sum(1 for s in sorted_ if s.defective and s.verdict == "PASS"),
        "false_rejects": sum(1 for s in sorted_ if not s.defective and s.verdict == "REJECT"),
        "rechecks": verdicts["RECHECK"],
        "bins": {str(k): v for k, v in sorted(robot.bins.items())},
        "duplicate_verdicts": robot.duplicates,
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


async def simulate(
    args: argparse.Namespace,
    workdir: Path,
    *,
    faults: Faults | None = None,
    timeouts: dict[str, float] | None = None,
    robot_profile: str | None = None,
) -> dict[str, Any]:
    """Run the cell against the simulated robot. For tests: ``faults`` to inject, step
    ``timeouts`` to shorten, ``robot_profile`` for the robot to request instead."""
    config_path = args.config or embedded_config()
    cell_cfg = load_cell(config_path)
    profiles = load_profiles(config_path, cell_cfg)
    profile = args.profile or cell_cfg.default_profile
    if profile not in profiles:
        raise ConfigError([Problem(str(config_path), 0, "--profile",
                                   f"no profile {profile!r}; the cell has: {', '.join(sorted(profiles))}")])
    endpoint = f"ipc://{workdir / 'robot.sock'}"
    cell_cfg = cell_cfg.model_copy(update={
        "robot": cell_cfg.robot.model_copy(update={"endpoint": endpoint}),
        "timeouts": cell_cfg.timeouts.model_copy(update=timeouts or {}),
    })
    world = SimWorld(seed=args.seed, time_scale=args.time_scale,
                     encoder_counts_per_rev=cell_cfg.devices.stage.encoder_counts_per_rev)
    if faults is not None:
        world.faults = faults
    robot = SimRobot(endpoint, world, profiles[profile].profile.geometry, robot_profile or profile,
                     args.parts, args.defect_rate, args.seed)
    records = args.records or workdir / "records.db"
    # a stalled cell must end the run, not hang CI: generous per-part allowance
    budget_s = 120.0 + args.parts * (2.0 + 6.0 * args.time_scale)
    async with contextlib.AsyncExitStack() as stack:
        cell_cfg = await serve_emulated(cell_cfg, world, stack)
        await robot.start()
        stack.push_async_callback(robot.close)
        if sys.stderr.isatty() and not args.json:
            stack.callback(sys.stderr.write, "\n")  # runs after the progress line stopped
            stack.push_async_callback(_cancel, asyncio.create_task(_progress(robot, args.parts)))
        async with Cell(cell_cfg, profiles, records, context={WORLD_KEY: world}) as cell:
            stop = asyncio.Event()
            t0 = time.monotonic()

            async def until_done() -> None:
                try:
                    await asyncio.wait_for(robot.done.wait(), budget_s)
                finally:
                    stop.set()

            watcher = asyncio.create_task(until_done())
            await cell.run(stop)
            elapsed = time.monotonic() - t0
            loop_lag = cell.loop_lag.summary()
            await _cancel(watcher)
    meta = {"profile": profile, "seed": args.seed, "defect_rate": args.defect_rate,
            "time_scale": args.time_scale, "records": str(args.records) if args.records else None,
            "loop_lag_ms": loop_lag}
    return summarize(robot, elapsed, meta)


def print_summary(s: dict[str, Any]) -> None:
    v = s["verdicts"]
    print(f"Simulated cell, profile {s['profile']}, seed {s['seed']}, defect rate {s['defect_rate']:g}, "
          f"time scale {s['time_scale']:g}")
    print(f"  parts inspected   {s['parts']} ({s['defective']} defective)")
    print(f"  verdicts          PASS {v['PASS']}   REJECT {v['REJECT']}   RECHECK {v['RECHECK']}")
    print(f"  delivered         {s['delivered']} acknowledged by the robot, {s['lost']} lost")
    print(f"  escapes           {s['escapes']} defective parts judged PASS")
    print(f"  false rejects     {s['false_rejects']} good parts judged REJECT")
    lat = s["latency_ms"]
    print(f"  latency           p50 {lat['p50']} ms   p99 {lat['p99']} ms   (part trigger to verdict published)")
    print(f"  throughput        {s['throughput_per_min']} parts/min over {s['elapsed_s']} s")
    lag = s["loop_lag_ms"]
    print(f"  event-loop lag    p99 {lag['p99']} ms   max {lag['max']} ms")


def main(args: argparse.Namespace) -> int:
    if args.export is not None:
        from cellctl.sim.export import export

        configure("auto", args.log_level or "info")
        counts = export(args)
        print(json.dumps(counts) if args.json else f"wrote {counts} to {args.export}")
        return 0
    # on a terminal the progress line is the display; per-part events need --log-level info
    configure("auto", args.log_level or ("warning" if sys.stderr.isatty() else "info"))
    try:
        with tempfile.TemporaryDirectory(prefix="cellctl-sim-") as tmp:
            summary = asyncio.run(simulate(args, Path(tmp)))
    except ConfigError as exc:
        report(exc)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0 if summary["lost"] == 0 else 1
