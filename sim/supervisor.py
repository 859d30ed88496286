"""``cellctl sim``'s end of the child daemon (sim/daemon.py): start, hand over parts, kill, restart.

``ChildDaemon`` is the robot's ``CellSide`` when the daemon runs in its own process. It starts
``python -m cellctl.sim.daemon SPEC`` in a session of its own (a Ctrl-C at the terminal reaches
only ``cellctl sim``, which then stops the child in order), writes each placed part on the
child's stdin and waits for the child's acknowledgement before the robot announces it. When a
part planned for ``daemon-kill`` reaches its kill point the child says so and gets SIGKILL; the
child is started again on the same records and endpoint and counted in ``restarts``. Any other
exit of the child before the run ends is a crash: counted in ``crashes`` and restarted, up to
``MAX_CRASHES``, after which the run gives up (``gave_up`` is set).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from cellctl.sim.part import SimPart

log = structlog.get_logger("cellctl.sim.supervisor")

MAX_CRASHES = 5
STOP_WAIT_S = 60.0  # a stopping child finishes its part and drains deliveries (DRAIN_S) first


class ChildDaemon:
    def __init__(self, spec_path: Path, stderr_path: Path, on_exit: Callable[[], None] | None = None) -> None:
        self._spec_path = spec_path
        self.on_exit = on_exit  # told at once when the child died (for a caller that cares)
        self._stderr_path = stderr_path
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._n = 0
        self._fixture: dict[str, Any] | None = None  # the part in the fixture, as the child gets it
        self._kill_pending = False
        self._stopping = False
        self.restarts = 0
        self.crashes = 0
        self.exit_codes: list[int] = []
        self.gave_up = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="child-daemon-supervisor")

    async def stop(self) -> None:
        """End of stdin: the child finishes the part in hand, drains and exits; SIGKILL if it hangs."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
            except TimeoutError:
                log.error("sim.child_stop_timeout", pid=proc.pid)
                proc.kill()
                await proc.wait()
        if proc is not None and proc.returncode not in (0, None):
            self.crashes += 1
            self.exit_codes.append(int(proc.returncode))
            log.error("sim.child_exit", pid=proc.pid, returncode=proc.returncode, when="stopping")
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        for fut in self._acks.values():
            fut.cancel()

    # --- the robot's CellSide ----------------------------------------------------------------

    async def place(self, part: SimPart | None, fault: str | None) -> None:
        self._n += 1
        n = self._n
        self._fixture = part.to_json() if part is not None else None
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[n] = ack
        await self._write({"n": n, "part": self._fixture, "fault": fault})
        await ack  # a child that dies first gets the part again from its successor's start

    # --- the process -------------------------------------------------------------------------

    async def _spawn(self) -> None:
        with open(self._stderr_path, "ab") as err:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cellctl.sim.daemon",
                str(self._spec_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        log.info("sim.child_started", pid=self._proc.pid)
        self._reader = asyncio.create_task(self._read(self._proc), name="child-daemon-reader")
        if self._n:  # what is in the fixture now; its fault has struck the predecessor already
            await self._write({"n": self._n, "part": self._fixture, "fault": None})

    async def _supervise(self) -> None:
        while True:
            assert self._proc is not None
            proc = self._proc
            returncode = await proc.wait()
            if self.on_exit is not None:
                self.on_exit()
            if self._reader is not None:
                await asyncio.gather(self._reader, return_exceptions=True)
            if self._kill_pending and returncode == -signal.SIGKILL:
                self.restarts += 1
                log.warning("sim.child_killed", pid=proc.pid, restarts=self.restarts)
            else:
                self.crashes += 1
                self.exit_codes.append(returncode)
                log.error(
                    "sim.child_exit",
                    pid=proc.pid,
                    returncode=returncode,
                    crashes=self.crashes,
                    stderr=self._stderr_tail(),
                )
                if self.crashes > MAX_CRASHES:
                    self.gave_up.set()
                    return
            self._kill_pending = False
            await self._spawn()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("sim.child_output", line=line[:200].decode(errors="replace"))
                continue
            if "placed" in message:
                for n in [k for k in self._acks if k <= message["placed"]]:
                    fut = self._acks.pop(n)
                    if not fut.done():
                        fut.set_result(None)
            elif "kill_point" in message and not self._stopping and proc.returncode is None:
                self._kill_pending = True
                log.warning("sim.kill", part_id=message["kill_point"], pid=proc.pid)
                proc.kill()

    async def _write(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return  # the successor gets the fixture when it starts
        try:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # died meanwhile: the supervisor restarts it and hands the fixture over again

    def _stderr_tail(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-800:]
        except OSError:
            return ""
