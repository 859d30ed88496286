"""Delivery of recorded verdicts to the robot: one task per verdict, resent until acknowledged.

A verdict whose acknowledgement does not come within the delivery deadline is marked
``expired`` and logged as an error; one still unacknowledged when the daemon stops stays
``pending`` and is resent at the next start (the robot deduplicates by cell and seq).
"""

from __future__ import annotations

import asyncio

import structlog

from cellctl.drivers import DriverTimeout
from cellctl.messages import Verdict
from cellctl.records import Records, RecordsError
from cellctl.robot_link import RobotLink

log = structlog.get_logger("cellctl.delivery")

DRAIN_S = 5.0  # on stop, how long open deliveries may still finish before they wait for restart


class Delivery:
    def __init__(self, link: RobotLink, records: Records) -> None:
        self.link = link
        self.records = records
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, verdict: Verdict) -> None:
        task = asyncio.create_task(self._deliver(verdict), name=f"deliver-{verdict.seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def replay(self) -> None:
        """Resend what a previous run recorded but never had acknowledged."""
        for verdict in await self.records.pending():
            log.info("verdict.replay", seq=verdict.seq, part_id=verdict.part_id, profile=verdict.profile)
            self.spawn(verdict)

    async def _deliver(self, verdict: Verdict) -> None:
        try:
            ack = await self.link.deliver(verdict)
        except DriverTimeout as exc:
            log.error(
                "verdict.undelivered", seq=verdict.seq, part_id=verdict.part_id, profile=verdict.profile, error=str(exc)
            )
            await self._mark(verdict, "expired")
            return
        log.info(
            "verdict.acked",
            seq=verdict.seq,
            part_id=verdict.part_id,
            profile=verdict.profile,
            bin=int(ack.bin),
            res=ack.res,
        )
        await self._mark(verdict, "acked")

    async def _mark(self, verdict: Verdict, state: str) -> None:
        try:
            await self.records.mark(verdict.seq, state)
        except RecordsError as exc:
            # the ack state is not the verdict: left 'pending', it is resent at the next start
            # and the robot deduplicates it
            log.warning(
                "verdict.mark_failed",
                seq=verdict.seq,
                part_id=verdict.part_id,
                profile=verdict.profile,
                state=state,
                error=str(exc),
            )

    async def drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_S)
            for task in pending:
                task.cancel()  # still 'pending' in the records: resent at the next start
            await asyncio.gather(*pending, return_exceptions=True)

    def health(self) -> dict[str, int]:
        return {"in_flight": len(self._tasks)}
