"""Fault injection beside the daemon: arms the planned fault of the part placed in the fixture.

The injector lives where the simulated world, the pty emulators and the daemon's ``Cell`` are
(``cellctl sim``'s own process, or the child daemon of ``sim/daemon.py``). The robot places
each part together with the name of the fault planned for it (``sim/faults.py``); the
injector arms it and disarms whatever is left when the next part is placed. The robot isolates
a faulted part (no other part is in the cell while it is), so every effect below belongs to
that part alone:

- world faults (camera, turntable alarm, dead light, refused configure) are counters and
  flags in ``world.faults`` that the simulated devices and the SCL emulator consume;
- serial faults act on the SCL drive emulator's wire: the next answer is line noise, or the
  adapter is pulled (and plugged back ``REPLUG_S`` later, same path through ``link_dir``);
- model faults wrap the daemon's inferencer (``CellHooks.wrap_inferencer``): NaN scores, or
  the RuntimeError onnxruntime raises;
- records faults are applied on the daemon's own SQLite connection when the part's inference
  runs (after its accept record, before its verdict record): ``PRAGMA query_only`` for a
  read-only database; for a full disk ``max_page_count`` pinned at the current size plus temp
  triggers that make every write grow a pinned temp table, so the very next write fails with
  SQLITE_FULL (a small row would otherwise still fit in a page with room left). Both are lifted
  once the cell reports itself blocked on its records, as an operator freeing the disk would.
- daemon-kill: at the part's inference the injector calls ``kill_point`` (the child daemon
  tells its parent, which sends SIGKILL) and holds the inference until the signal lands;
- sighup: at the part's inference (accepted, acquired, not yet judged: mid-part) the daemon's
  process gets SIGHUP, as from ``systemctl reload``; the cell reloads its profiles between parts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from cellctl.sim.part import SimPart
from cellctl.sim.world import SimWorld

if TYPE_CHECKING:
    from cellctl.app import Cell, CellHooks

log = structlog.get_logger("cellctl.sim.injector")

OVER_TEMPERATURE = 1 << 3  # the SCL AL bit the stepper-alarm fault raises
GARBAGE = b"\xfe\x13#\xa7@\r"  # line noise that ends in CR: the driver reads it as the answer
REPLUG_S = 0.5  # simulated seconds the adapter stays out (0 at time scale 0: the next tick)
KILL_HOLD_S = 30.0  # the inference of a part to be killed waits this long for the SIGKILL
RESTORE_AFTER_S = 0.2  # simulated seconds between the cell blocking and the disk being freed
RECORDS_FAULT_MAX_S = 10.0  # lift a records fault even if the cell never reports blocked (wall)
BLOCK_POLL_S = 0.02  # how often the cell state is read while a records fault is on
UNLIMITED_PAGES = 1073741823
# world faults: the ``world.faults`` field each sets for its part, and the value it sets
WORLD_FAULTS: dict[str, tuple[str, int | bool]] = {
    "camera-timeout": ("frame_timeouts", 1),
    "camera-disconnect": ("frame_disconnects", 1),
    "incomplete-frame": ("incomplete_frames", 1),
    "stepper-alarm": ("stage_alarm_bits", OVER_TEMPERATURE),
    "light-fault": ("light_dead", True),
    "profile-refused": ("configure_refusals", 1),
}


def _records_fault(fault: str) -> Callable[[sqlite3.Connection], None]:
    def apply(db: sqlite3.Connection) -> None:
        if fault == "records-readonly":
            db.execute("PRAGMA query_only = 1")
            return
        pages = db.execute("PRAGMA main.page_count").fetchone()[0]
        db.execute(f"PRAGMA main.max_page_count = {int(pages)}")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS sim_disk_full(x BLOB)")
        temp_pages = db.execute("PRAGMA temp.page_count").fetchone()[0]
        db.execute(f"PRAGMA temp.max_page_count = {int(temp_pages)}")
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        ]
        for k, table in enumerate(tables):
            quoted = '"' + table.replace('"', '""') + '"'
            for op in ("INSERT", "UPDATE", "DELETE"):
                db.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS sim_disk_full_{k}_{op.lower()} AFTER {op} "
                    f"ON main.{quoted} BEGIN INSERT INTO sim_disk_full VALUES (zeroblob(65536)); END"
                )

    return apply


def _records_restore(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA query_only = 0")
    names = [
        r[0]
        for r in db.execute(
            "SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name LIKE 'sim_disk_full_%'"
        )
    ]
    for name in names:
        db.execute(f'DROP TRIGGER IF EXISTS temp."{name}"')
    db.execute("DROP TABLE IF EXISTS temp.sim_disk_full")
    db.execute(f"PRAGMA main.max_page_count = {UNLIMITED_PAGES}")
    db.execute(f"PRAGMA temp.max_page_count = {UNLIMITED_PAGES}")


class FaultyInferencer:
    """The daemon's inferencer with the injector between it and the caller."""

    def __init__(self, inner: Any, injector: FaultInjector) -> None:
        self._inner = inner
        self._injector = injector

    def __getattr__(self, name: str) -> Any:  # sha256, path, ... of the real one
        return getattr(self._inner, name)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        fault = self._injector.at_inference()
        if fault == "model-error":
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : injected fault (model-error)")
        probs, ood = self._inner.infer(batch)
        if fault == "model-nan":
            return np.full_like(probs, np.nan, dtype=np.float32), ood
        return probs, ood


class FaultInjector:
    def __init__(
        self, world: SimWorld, emulators: dict[str, Any], *, kill_point: Callable[[str], None] | None = None
    ) -> None:
        self.world = world
        self.emulators = emulators  # by device name: "stage" (SCL), "lighting" (Gardasoft)
        self.kill_point = kill_point
        self.armed: tuple[str, str] | None = None  # (part_id, fault) of the part in the fixture
        self.fired: dict[str, str] = {}  # part_id -> fault, in this process
        self._records: Any = None
        self._cell: Cell | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._records_on = False
        self._records_lock = threading.Lock()
        self._killed: set[str] = set()  # parts whose signal was sent (sighup, daemon-kill)
        self._unplugged = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- wiring ------------------------------------------------------------------------------

    def hooks(self) -> CellHooks:
        from cellctl.app import CellHooks  # the core's seam; imported where the cell is built

        return CellHooks(
            wrap_inferencer=lambda inner: FaultyInferencer(inner, self), records_opened=self._records_opened
        )

    def attach(self, cell: Cell) -> None:
        """The cell whose state tells when a records fault has blocked it."""
        self._cell = cell
        self._loop = asyncio.get_running_loop()

    def _records_opened(self, records: Any) -> None:
        self._records = records
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        await self._disarm()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the fixture -------------------------------------------------------------------------

    async def place(self, part: SimPart | None, fault: str | None) -> None:
        """``part`` is now in the fixture (None: empty), with ``fault`` planned for it."""
        await self._disarm()
        self.world.fixture = part
        if part is None or not fault:
            return
        self.armed = (part.part_id, fault)
        self.fired[part.part_id] = fault
        if fault in WORLD_FAULTS:
            name, value = WORLD_FAULTS[fault]
            setattr(self.world.faults, name, value)
        elif fault == "serial-garbage":
            self.emulators["stage"].send_garbage(GARBAGE)
        elif fault == "serial-unplug":
            self.emulators["stage"].unplug()
            self._unplugged = True
            self._spawn(self._replug())
        log.info("sim.fault_armed", part_id=part.part_id, fault=fault)

    async def _replug(self) -> None:
        await self.world.clock.sleep(REPLUG_S)
        if self._unplugged:
            self._unplugged = False
            await self.emulators["stage"].replug()

    async def _disarm(self) -> None:
        """Take back what is left of the last part's fault (and only that: a test may have set
        other world faults for the whole run)."""
        if self.armed is not None and self.armed[1] in WORLD_FAULTS:
            name, value = WORLD_FAULTS[self.armed[1]]
            setattr(self.world.faults, name, type(value)())  # 0 / False
        self.armed = None
        if self._unplugged:  # the replug is still due: plug in before the next part
            self._unplugged = False
            await self.emulators["stage"].replug()
        await self._restore_records()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- on the inference thread -------------------------------------------------------------

    def at_inference(self) -> str | None:
        """The fault the current inference suffers; applies records faults and kill points."""
        armed = self.armed
        if armed is None:
            return None
        part_id, fault = armed
        if fault in ("records-readonly", "disk-full"):
            self._apply_records_fault(part_id, fault)
        elif fault == "sighup" and part_id not in self._killed:
            self._killed.add(part_id)
            log.info("sim.sighup", part_id=part_id)
            os.kill(os.getpid(), signal.SIGHUP)  # the cell's handler runs on the loop
        elif fault == "daemon-kill" and self.kill_point is not None and part_id not in self._killed:
            self._killed.add(part_id)
            log.warning("sim.kill_point", part_id=part_id, fault=fault)
            self.kill_point(part_id)
            time.sleep(KILL_HOLD_S)  # the SIGKILL lands here; without it the part goes on
        return fault

    def _apply_records_fault(self, part_id: str, fault: str) -> None:
        with self._records_lock:
            if self._records_on or self._records is None or self._loop is None:
                return
            self._records_on = True
        future = asyncio.run_coroutine_threadsafe(self._records.on_thread(_records_fault(fault)), self._loop)
        future.result(timeout=10.0)
        log.warning("sim.records_fault", part_id=part_id, fault=fault)
        self._loop.call_soon_threadsafe(self._spawn, self._lift_when_blocked(part_id, fault))

    async def _lift_when_blocked(self, part_id: str, fault: str) -> None:
        """Free the records once the cell has noticed (blocked on records), as an operator would."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < RECORDS_FAULT_MAX_S:
            state = getattr(self._cell, "state", None)
            if state is not None and state.name == "blocked" and "records" in state.blocked_reasons:
                break
            await asyncio.sleep(BLOCK_POLL_S)
        else:
            log.warning("sim.records_fault_unnoticed", part_id=part_id, fault=fault)
        await self.world.clock.sleep(RESTORE_AFTER_S)
        await self._restore_records()

    async def _restore_records(self) -> None:
        with self._records_lock:
            if not self._records_on:
                return
            self._records_on = False
        try:
            await self._records.on_thread(_records_restore)
        except Exception as exc:  # noqa: BLE001 - records already closed (the cell stopped): nothing to restore
            log.warning("sim.records_restore_failed", error=str(exc))
            return
        log.info("sim.records_restored")
