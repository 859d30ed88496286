"""The daemon as a child process of ``cellctl sim``, for faults that kill or signal it.

``python -m cellctl.sim.daemon SPEC.json`` runs the composition root ``cellctl run`` runs
(``Cell`` under ``cell.signals``: SIGTERM/SIGINT finish the part and stop, SIGHUP reloads the
profiles) with the simulated world, the pty emulators and the fault injector in this process.
The parent runs the simulated robot on the ZeroMQ endpoint and supervises this process.

The fixture channel is stdin/stdout, one JSON object a line: the parent writes
``{"n": N, "part": <SimPart JSON or null>, "fault": <name or null>}`` when it places a part
(the physical hand-over of the real robot) and waits for ``{"placed": N}`` before it announces
the part; the child writes ``{"kill_point": PART_ID}`` when a part planned for daemon-kill
reaches its inference (the parent then sends SIGKILL). End of stdin (the parent is gone or done)
stops the cell as SIGTERM does. Logs are JSON lines in the file the spec names.

SPEC.json: ``config``, ``records``, ``endpoint``, ``seed``, ``time_scale``, ``timeouts`` (step
overrides), ``link`` (robot link settings over the config's: the run's CURVE keys, the sim's
short heartbeat and delivery deadline), ``captures`` (the capture store's settings, or null),
``link_dir`` (stable emulator paths), ``log`` (file), ``log_level``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import structlog

from cellctl.config import CaptureSettings, CellConfig, ResolvedProfile, load_cell, load_profiles
from cellctl.logs import configure
from cellctl.sim.emulated import serve_emulated
from cellctl.sim.injector import FaultInjector
from cellctl.sim.part import SimPart
from cellctl.sim.world import WORLD_KEY, SimWorld

log = structlog.get_logger("cellctl.sim.daemon")


def sim_cell(
    config_path: Path,
    endpoint: str,
    timeouts: dict[str, float] | None,
    link: dict[str, Any] | None = None,
    captures: dict[str, Any] | None = None,
) -> tuple[CellConfig, dict[str, ResolvedProfile]]:
    """The cell config ``cellctl sim`` runs: the robot on ``endpoint`` with the ``link`` settings
    (keys, heartbeat, deadline: validated like the YAML), step timeouts overridden, and the
    capture store on with ``captures`` (``--captures``: its dir and budget over the config's)."""
    cell_cfg = load_cell(config_path)
    profiles = load_profiles(config_path, cell_cfg)
    robot = type(cell_cfg.robot).model_validate({**cell_cfg.robot.model_dump(), **(link or {}), "endpoint": endpoint})
    storage = cell_cfg.storage
    if captures is not None:
        before = storage.captures.model_dump() if storage.captures is not None else {}
        storage = storage.model_copy(update={"captures": CaptureSettings.model_validate({**before, **captures})})
    cell_cfg = cell_cfg.model_copy(
        update={"robot": robot, "timeouts": cell_cfg.timeouts.model_copy(update=timeouts or {}), "storage": storage}
    )
    return cell_cfg, profiles


class _Stdout:
    """Lines to the parent, from the loop and from the inference thread alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self._lock:
            os.write(sys.stdout.fileno(), data)


async def _fixture_channel(injector: FaultInjector, out: _Stdout, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            message = json.loads(line)
            part = SimPart.from_json(message["part"]) if message["part"] is not None else None
            await injector.place(part, message["fault"])
            out.send({"placed": message["n"]})
    finally:
        transport.close()
        stop.set()  # the parent is gone or done: finish the part in hand and stop


async def serve(spec: dict[str, Any]) -> int:
    from cellctl.app import Cell  # the composition root of `cellctl run`

    config_path = Path(spec["config"])
    cell_cfg, profiles = sim_cell(
        config_path, spec["endpoint"], spec.get("timeouts"), spec.get("link"), spec.get("captures")
    )
    world = SimWorld(
        seed=spec["seed"],
        time_scale=spec["time_scale"],
        encoder_counts_per_rev=cell_cfg.devices.stage.encoder_counts_per_rev,
    )
    out = _Stdout()
    stop = asyncio.Event()
    emulators: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        cell_cfg = await serve_emulated(cell_cfg, world, stack, link_dir=Path(spec["link_dir"]), emulators=emulators)
        injector = FaultInjector(world, emulators, kill_point=lambda part_id: out.send({"kill_point": part_id}))
        stack.push_async_callback(injector.close)
        channel = asyncio.create_task(_fixture_channel(injector, out, stop), name="fixture-channel")
        stack.push_async_callback(_cancel, channel)
        cell = Cell(
            cell_cfg,
            profiles,
            Path(spec["records"]),
            context={WORLD_KEY: world},
            hooks=injector.hooks(),
            config_path=config_path,
        )
        with cell.signals(stop):
            async with cell:
                injector.attach(cell)
                await cell.run(stop)
    return 0


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # a SIGHUP before the cell's handler is installed must not end the process (default action)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    spec = json.loads(Path(argv[0]).read_text())
    with open(spec["log"], "a", buffering=1, encoding="utf-8") as log_file:
        configure("json", spec.get("log_level", "info"), stream=log_file)
        return asyncio.run(serve(spec))


if __name__ == "__main__":
    sys.exit(main())
