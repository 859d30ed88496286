"""The cell's end of the robot link: a ZeroMQ DEALER connected to the bridge's ROUTER.

Verdicts travel on a request/acknowledge channel, never on PUB/SUB (which drops at the
high-water mark and has no way back). A verdict is resent every ``ack_timeout_s`` until the
bridge acknowledges its sequence number or ``delivery_deadline_s`` passes; the bridge
deduplicates by (cell_id, seq). Malformed messages are logged and dropped.
"""

from __future__ import annotations

import asyncio
import time

import structlog
import zmq
import zmq.asyncio
from pydantic import ValidationError

from cellctl.config import RobotLink as LinkSettings
from cellctl.drivers import DriverTimeout
from cellctl.messages import CELL_BOUND, Ack, Heartbeat, PartRequest, Ready, Verdict, encode

log = structlog.get_logger("cellctl.robot_link")


class RobotLink:
    def __init__(self, settings: LinkSettings, cell_id: str) -> None:
        self._settings = settings
        self._cell_id = cell_id
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._parts: asyncio.Queue[PartRequest] = asyncio.Queue()
        self._acks: dict[int, asyncio.Future[Ack]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.last_heard_s: float | None = None
        self.dropped = 0

    async def connect(self) -> None:
        self._ctx = zmq.asyncio.Context()
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt_string(zmq.IDENTITY, self._cell_id)
        sock.connect(self._settings.endpoint)
        self._sock = sock
        self._tasks = [
            asyncio.create_task(self._reader(), name="robot-link-reader"),
            asyncio.create_task(self._heartbeat(), name="robot-link-heartbeat"),
        ]
        log.info("robot_link.connected", endpoint=self._settings.endpoint)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._sock = self._ctx = None

    async def request_part(self, accepted: str | None, timeout_s: float | None = None) -> PartRequest:
        """Tell the bridge the fixture is free (``accepted``: the last part taken from it) and
        wait for the next part."""
        # A part request already queued answers no ready of this request (e.g. one a killed
        # predecessor sent): taking it would inspect a part twice. Dropped and logged.
        while not self._parts.empty():
            stale = self._parts.get_nowait()
            self.dropped += 1
            log.warning("robot_link.stale_part", part_id=stale.part_id, profile=stale.profile)
        await self._send(Ready(cell_id=self._cell_id, accepted=accepted))
        try:
            return await asyncio.wait_for(self._parts.get(), timeout_s)
        except TimeoutError as exc:
            raise DriverTimeout(f"robot: no part within {timeout_s:g} s") from exc

    async def deliver(self, verdict: Verdict) -> Ack:
        """Send until acknowledged; raise DriverTimeout after the delivery deadline."""
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._acks[verdict.seq] = future
        deadline = time.monotonic() + self._settings.delivery_deadline_s
        attempt = 0
        try:
            while True:
                attempt += 1
                await self._send(verdict)
                remaining = deadline - time.monotonic()
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(future), min(self._settings.ack_timeout_s, max(remaining, 0.0))
                    )
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise DriverTimeout(
                            f"robot: verdict seq {verdict.seq} not acknowledged after {attempt} sends"
                        ) from None
                    log.warning(
                        "verdict.resend",
                        seq=verdict.seq,
                        part_id=verdict.part_id,
                        profile=verdict.profile,
                        attempt=attempt + 1,
                    )
        finally:
            self._acks.pop(verdict.seq, None)

    async def _send(self, message: Ready | Verdict | Heartbeat) -> None:
        assert self._sock is not None, "connect() first"
        await self._sock.send(encode(message))

    async def _reader(self) -> None:
        assert self._sock is not None
        while True:
            raw = await self._sock.recv()
            self.last_heard_s = time.monotonic()
            try:
                message = CELL_BOUND.validate_json(raw)
            except ValidationError as exc:
                self.dropped += 1
                log.warning("robot_link.malformed", error=str(exc).splitlines()[0], size=len(raw))
                continue
            if isinstance(message, PartRequest):
                self._parts.put_nowait(message)
            elif isinstance(message, Ack):
                future = self._acks.get(message.seq)
                if future is not None and not future.done():
                    future.set_result(message)
            # heartbeats only refresh last_heard_s

    async def _heartbeat(self) -> None:
        while True:
            await self._send(Heartbeat(sender=self._cell_id))
            await asyncio.sleep(self._settings.heartbeat_s)
