"""The cell state that every part of the daemon reads and writes, and nothing else.

``starting`` until the devices are up, then ``ready`` (waiting for a part) and ``busy`` (a part
in hand), ``blocked`` while any reason holds (records unwritable; later: robot link down,
an expired MPI check, an operator pause), ``stopping`` once a stop was asked for. A blocked
cell asks the robot for no part; each reason is set and cleared by the component that owns
it, so two troubles do not clear each other.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any

import structlog

log = structlog.get_logger("cellctl.state")


class Phase(StrEnum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    BLOCKED = "blocked"
    STOPPING = "stopping"


class CellState:
    def __init__(self) -> None:
        self._phase = Phase.STARTING
        self.blocked_reasons: dict[str, str] = {}
        self._unblocked = asyncio.Event()
        self._unblocked.set()

    @property
    def phase(self) -> Phase:
        if self._phase is not Phase.STOPPING and self.blocked_reasons:
            return Phase.BLOCKED
        return self._phase

    @property
    def name(self) -> str:
        return self.phase.value

    def set(self, phase: Phase) -> None:
        """starting / ready / busy / stopping; blocked comes from block() only."""
        if self._phase is Phase.STOPPING:
            return  # nothing takes a stopping cell back
        self._phase = phase

    def block(self, key: str, reason: str) -> None:
        first = key not in self.blocked_reasons
        self.blocked_reasons[key] = reason
        self._unblocked.clear()
        if first:
            log.error("cell.blocked", key=key, reason=reason)

    def unblock(self, key: str) -> None:
        if self.blocked_reasons.pop(key, None) is not None:
            log.warning("cell.unblocked", key=key, still_blocked=sorted(self.blocked_reasons))
        if not self.blocked_reasons:
            self._unblocked.set()

    async def wait_unblocked(self) -> None:
        await self._unblocked.wait()

    def health(self) -> dict[str, Any]:
        return {"state": self.name, "blocked": dict(self.blocked_reasons)}
