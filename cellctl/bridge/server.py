"""The bridge's ZeroMQ server: the ROUTER every cell's DEALER connects to (protocol v2).

Per cell: the latest ``ready`` wins (``robot.offer`` runs one at a time, a newer ready
supersedes a queued older one, and the answer to a superseded request is never sent); a
verdict acts once per (cell_id, boot_id, seq) (``dedupe``); heartbeats go to every cell heard
within ``missed_beats * heartbeat_s``. With ``auth`` every peer is a CURVE client whose key is
in the allow-list (ZAP); the key is the cell, never the socket identity (a peer chooses that),
the route to a cell is the routing id of its latest valid message, and a message naming
another cell than the key's is refused ``wrong_cell``. Without ``auth`` the socket identity is
the cell. Every send goes through ``send``/``send_frames`` (the simulator overrides them
to inject link faults) with NOBLOCK: a peer at its high-water mark loses the message, counted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
import zmq
import zmq.asyncio
from pydantic import TypeAdapter, ValidationError
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from cellctl.bridge.auth import BridgeAuth
from cellctl.bridge.dedupe import Completed, Dedupe, Key
from cellctl.bridge.robot import Placed, RobotSide
from cellctl.drivers import CellError
from cellctl.link.aio import noteworthy
from cellctl.link.protocol import (
    MAXMSGSIZE,
    Ack,
    Heartbeat,
    Message,
    Part,
    Ready,
    Refusal,
    Refused,
    Rejected,
    Verdict,
    decode_bridge_bound,
    encode,
)
from cellctl.outcome import Bin
from cellctl.text import SafeName, printable

log = structlog.get_logger("cellctl.bridge")

SENDER = "bridge"  # Heartbeat.sender of the bridge
ZAP_DOMAIN = "cellctl"
HWM = 1000
MAX_CELLS = 256  # without auth any identity is a cell: bound the table
MAX_SORTS_PER_CELL = 64  # verdicts of one cell being sorted at once (a cell's window is far lower)
OFFER_RETRY_MAX_S = 8.0  # back-off ceiling when robot.offer fails
CLOSE_GRACE_S = 5.0  # sorts in progress at close get this long to finish and be acknowledged
_HANDSHAKE_FAILED: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "no_detail",  # e.g. a peer without CURVE (mechanism mismatch)
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",  # a malformed handshake
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",  # ZAP denied the key
}
_CELL_ID: TypeAdapter[str] = TypeAdapter(SafeName)


class BridgeError(CellError):
    """The server cannot start (endpoint not bindable, keys unusable)."""


@dataclass
class _Cell:
    cell_id: str
    identity: bytes  # the route: routing id of the cell's latest valid message
    last_heard: float
    up: bool = False
    boot_id: str | None = None
    latest_request: str | None = None
    queued: Ready | None = None  # at most one ready waits behind the one being offered
    offering: asyncio.Task[None] | None = None
    sorting: dict[Key, asyncio.Task[None]] = field(default_factory=dict)


class BridgeServer:
    def __init__(
        self,
        endpoint: str,
        robot: RobotSide,
        *,
        auth: BridgeAuth | None,
        heartbeat_s: float = 1.0,
        missed_beats: int = 3,
        dedupe: Dedupe | None = None,
    ) -> None:
        if not heartbeat_s > 0 or missed_beats < 1:
            raise ValueError("heartbeat_s must be > 0 and missed_beats >= 1")
        self.endpoint = endpoint
        self.robot = robot
        self.auth = auth
        self.heartbeat_s = heartbeat_s
        self.missed_beats = missed_beats
        self.dedupe = dedupe if dedupe is not None else Dedupe()
        self.boot_id: str | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._authenticator: AsyncioAuthenticator | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cells: dict[str, _Cell] = {}
        self._counts: Counter[str] = Counter()
        self._refused_sent: Counter[str] = Counter()
        self._refused_by_cells: Counter[str] = Counter()
        self._handshake_failed: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    # lifecycle

    async def start(self) -> None:
        """Load the keys, bind, start ZAP, receiving and heartbeats; a new ``boot_id`` each time."""
        if self._sock is not None:
            raise RuntimeError("BridgeServer already started")
        if self.auth is not None:
            await asyncio.to_thread(self.auth.load)
        else:
            log.warning("bridge.security_none", endpoint=self.endpoint, why="any process can feed or ack verdicts")
        await self.dedupe.open()
        self._ctx = zmq.asyncio.Context()
        try:
            self._sock = self._bind(self._ctx)
        except BaseException:
            await self._teardown()
            raise
        self.boot_id = secrets.token_hex(8)
        self._cells = {}
        self._spawn(self._receive(), "bridge-receive")
        self._spawn(self._beat(), "bridge-heartbeat")
        self._monitor = self._sock.get_monitor_socket(sum(_HANDSHAKE_FAILED))
        self._spawn(self._watch(self._monitor), "bridge-monitor")
        log.info("bridge.started", endpoint=self.endpoint, boot_id=self.boot_id, security=self._security)

    def _bind(self, ctx: zmq.asyncio.Context) -> zmq.asyncio.Socket:
        if self.auth is not None:
            # one authenticator per context; its ZAP task must start inside the running loop
            self._authenticator = AsyncioAuthenticator(ctx, log=logging.getLogger("cellctl.bridge.zap"))
            self._authenticator.start()
            self._authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self.auth)
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # plain: the identity is the cell, so a restarted cell must take its identity back. With
        # auth a cell sets no identity (libzmq assigns one) and the route follows its key: an
        # identity in use is never taken over (a listed key choosing another cell's is ignored)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1 if self.auth is None else 0)
        # a send to a gone peer or one at its HWM raises instead of vanishing: drops are counted
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.SNDHWM, HWM)
        if self.auth is not None:
            sock.curve_secretkey = self.auth.secret_key
            sock.curve_publickey = self.auth.public_key
            sock.curve_server = True
            sock.zap_domain = ZAP_DOMAIN.encode()
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise BridgeError(f"cannot bind {printable(self.endpoint)}: {exc.strerror}") from None
        return sock

    async def close(self) -> None:
        """Stop (bounded); sorts in progress get CLOSE_GRACE_S to finish. ``start`` may follow."""
        if self._ctx is None:
            return
        sorts = {t for cell in self._cells.values() for t in cell.sorting.values()}
        for task in self._tasks - sorts:
            task.cancel()
        if sorts:
            await asyncio.wait(sorts, timeout=CLOSE_GRACE_S)
        for task in sorts:
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_S)
        await self._teardown()
        log.info("bridge.stopped", boot_id=self.boot_id)

    async def _teardown(self) -> None:
        if self._sock is not None and self._monitor is not None:
            self._sock.disable_monitor()
        for sock in (self._monitor, self._sock):
            if sock is not None:
                sock.close(linger=0)
        self._monitor = self._sock = None
        if self._authenticator is not None:
            # stop() cancels the ZAP task without waiting: wait for it (pyzmq keeps it private)
            zap_task = getattr(self._authenticator, "_AsyncioAuthenticator__task", None)
            self._authenticator.stop()
            if isinstance(zap_task, asyncio.Future):
                await asyncio.wait([zap_task], timeout=CLOSE_GRACE_S)
            self._authenticator = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        self._cells = {}
        await self.dedupe.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def route(self, cell_id: str) -> bytes | None:
        """The routing id a message to ``cell_id`` goes to now (its latest valid message's), or
        None if the cell was not heard since this start. A send deferred past a reconnection of
        the cell must look it up again: a new connection has a new routing id."""
        cell = self._cells.get(cell_id)
        return None if cell is None else cell.identity

    @property
    def _security(self) -> str:
        return "none" if self.auth is None else "curve"

    # the one send path (the simulator's SimBridge overrides these to inject link faults)

    async def send(self, identity: bytes, message: Message) -> None:
        """Encode and send one message to the cell behind ``identity``."""
        if isinstance(message, Refused):
            self._refused_sent[message.reason.value] += 1
        elif isinstance(message, Ack):
            self._counts["acks_sent"] += 1
        elif isinstance(message, Part):
            self._counts["parts_sent"] += 1
        await self.send_frames(identity, [encode(message)])

    async def send_frames(self, identity: bytes, frames: list[bytes]) -> None:
        """Send raw frames, NOBLOCK: at the high-water mark or to a gone peer they are dropped, counted."""
        sock = self._sock
        if sock is None:
            self._dropped["closed"] += 1
            return
        try:
            await sock.send_multipart([identity, *frames], flags=zmq.NOBLOCK)
        except zmq.Again:
            self._dropped["hwm"] += 1
        except zmq.ZMQError as exc:
            self._dropped["unreachable" if exc.errno == zmq.EHOSTUNREACH else "error"] += 1

    # receiving

    async def _receive(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while True:
            frames = await sock.recv_multipart(copy=False)
            self._counts["received"] += 1
            try:
                await self._on_frames(frames[0].bytes, frames[1:])
            except Exception as exc:  # noqa: BLE001 - one bad message never stops the server
                log.error("bridge.handler_failed", error=f"{type(exc).__name__}: {printable(str(exc))[:200]}")

    async def _on_frames(self, identity: bytes, payload: list[zmq.Frame]) -> None:
        size = sum(len(f.bytes) for f in payload)
        cell_id, why = self._sender(identity, payload)
        if cell_id is None:
            await self._refuse(identity, None, Rejected(Refusal.WRONG_CELL, why), len(payload), size)
            return
        message = decode_bridge_bound([f.bytes for f in payload])
        if isinstance(message, Rejected):
            await self._refuse(identity, cell_id, message, len(payload), size)
            return
        claimed = message.sender if isinstance(message, Heartbeat) else getattr(message, "cell_id", cell_id)
        if claimed != cell_id:
            ids = {"request_id": getattr(message, "request_id", None), "part_id": getattr(message, "part_id", None)}
            wrong = Rejected(Refusal.WRONG_CELL, f"sent by {cell_id}, names {claimed}")
            await self._refuse(identity, cell_id, wrong, len(payload), size, **ids)
            return
        # only a valid message of the cell moves its route (and counts as a sign of life)
        cell = await self._heard(cell_id, identity)
        if isinstance(message, Ready | Heartbeat) and message.boot_id != cell.boot_id:
            if cell.boot_id is not None:
                log.info("bridge.cell_restarted", cell=cell_id, boot_id=message.boot_id)
            cell.boot_id = message.boot_id
        if isinstance(message, Ready):
            self._on_ready(cell, message)
        elif isinstance(message, Verdict):
            self._on_verdict(cell, message)
        elif isinstance(message, Refused):
            self._on_refused(cell, message)

    def _sender(self, identity: bytes, payload: list[zmq.Frame]) -> tuple[str | None, str]:
        """The cell that sent this, or None and why it is no cell."""
        if self.auth is None:
            try:
                cell_id = _CELL_ID.validate_python(identity.decode("utf-8"))
            except (UnicodeDecodeError, ValidationError):
                return None, "the socket identity is not a cell id"
            if cell_id not in self._cells and len(self._cells) >= MAX_CELLS:
                return None, f"more than {MAX_CELLS} cells"
            return cell_id, ""
        try:
            user_id = str(payload[-1].get("User-Id")) if payload else None
        except zmq.ZMQError:
            user_id = None
        keyholder = self.auth.cell_for(user_id)
        if keyholder is None:
            return None, "not an authenticated cell"
        return keyholder, ""

    async def _heard(self, cell_id: str, identity: bytes) -> _Cell:
        now = time.monotonic()
        cell = self._cells.get(cell_id)
        if cell is None:
            cell = self._cells[cell_id] = _Cell(cell_id, identity, now)
        elif cell.identity != identity:
            # a restarted cell (a new connection), or two processes sharing one key
            self._counts["cell_moved"] += 1
            if noteworthy(self._counts["cell_moved"]):
                log.info("bridge.cell_moved", cell=cell_id, moves=self._counts["cell_moved"])
        cell.last_heard, cell.identity = now, identity
        if not cell.up:
            cell.up = True
            log.info("bridge.cell_up", cell=cell_id)
            await self._beat_to(cell)  # the cell learns our boot id now, not a period later
        return cell

    async def _refuse(
        self, identity: bytes, cell_id: str | None, why: Rejected, frames: int, size: int, **ids: str | None
    ) -> None:
        # never the content: a refused message may be anything, of any size
        if noteworthy(self._refused_sent[why.reason.value] + 1):
            log.warning(
                "bridge.refused", cell=cell_id, reason=why.reason.value, detail=why.detail, frames=frames, bytes=size
            )
        await self.send(identity, why.refused(**ids))

    def _on_refused(self, cell: _Cell, refused: Refused) -> None:
        self._refused_by_cells[refused.reason.value] += 1
        if noteworthy(self._refused_by_cells[refused.reason.value]):
            log.warning("bridge.refused_by_cell", cell=cell.cell_id, reason=refused.reason.value, detail=refused.detail)
        try:
            self.robot.refused(cell.cell_id, refused)
        except Exception as exc:  # noqa: BLE001 - the robot's bookkeeping must not stop the server
            log.error("bridge.robot_refused_failed", error=f"{type(exc).__name__}: {exc}")

    # ready -> part

    def _on_ready(self, cell: _Cell, ready: Ready) -> None:
        cell.latest_request = ready.request_id
        if cell.queued is not None:  # never offered: the newer one takes its place
            self._counts["readies_skipped"] += 1
            log.info("bridge.ready_superseded", cell=cell.cell_id, request_id=cell.queued.request_id)
        cell.queued = ready
        if cell.offering is None or cell.offering.done():
            cell.offering = self._spawn(self._offer_queued(cell), f"bridge-offer-{cell.cell_id}")

    async def _offer_queued(self, cell: _Cell) -> None:
        while cell.queued is not None:
            ready, cell.queued = cell.queued, None
            placed = await self._offer(cell, ready)
            if placed is None:
                continue
            if cell.latest_request != ready.request_id:
                self._counts["superseded"] += 1
                log.warning(
                    "bridge.part_superseded", cell=cell.cell_id, request_id=ready.request_id, part_id=placed.part_id
                )
                continue  # the next ready's `accepted` tells the robot the cell never took it
            try:
                part = Part(request_id=ready.request_id, part_id=placed.part_id, profile=placed.profile)
            except ValidationError as exc:
                self._counts["offer_errors"] += 1
                log.error("bridge.bad_part", cell=cell.cell_id, error=printable(str(exc.errors()[0]["msg"])))
                continue
            await self.send(cell.identity, part)

    async def _offer(self, cell: _Cell, ready: Ready) -> Placed | None:
        """robot.offer, retried with back-off while this request is the cell's latest."""
        delay = self.heartbeat_s
        while True:
            try:
                return await self.robot.offer(cell.cell_id, ready)
            except Exception as exc:  # noqa: BLE001 - e.g. the KRC link is down: retry, never crash
                self._counts["offer_errors"] += 1
                log.error("bridge.offer_failed", cell=cell.cell_id, error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay)
            delay = min(2 * delay, OFFER_RETRY_MAX_S)
            if cell.queued is not None or cell.latest_request != ready.request_id:
                return None

    # verdict -> sort -> ack

    def _on_verdict(self, cell: _Cell, verdict: Verdict) -> None:
        key = Key(cell.cell_id, verdict.boot_id, verdict.seq)
        if key in cell.sorting:
            self._counts["in_progress_ignored"] += 1
            return
        if len(cell.sorting) >= MAX_SORTS_PER_CELL:
            self._counts["busy_dropped"] += 1  # the cell resends it
            log.warning("bridge.sorts_busy", cell=cell.cell_id, seq=verdict.seq)
            return
        task = self._spawn(self._sort(cell, key, verdict), f"bridge-sort-{cell.cell_id}-{verdict.seq}")
        cell.sorting[key] = task
        task.add_done_callback(lambda _: cell.sorting.pop(key, None))

    async def _sort(self, cell: _Cell, key: Key, verdict: Verdict) -> None:
        try:
            done = await self.dedupe.get(key)
        except CellError as exc:  # unknown whether it was acted on: no sort, no ack; the cell resends
            log.error("bridge.dedupe_failed", cell=cell.cell_id, seq=verdict.seq, error=str(exc))
            return
        if done is not None:
            self._counts["duplicates"] += 1
            log.info("bridge.verdict_duplicate", cell=cell.cell_id, seq=verdict.seq)
        else:
            try:
                result = await self.robot.sort(cell.cell_id, verdict)
            except Exception as exc:  # noqa: BLE001 - not acted on: no ack, the cell resends
                self._counts["sort_errors"] += 1
                error = f"{type(exc).__name__}: {exc}"
                log.error("bridge.sort_failed", cell=cell.cell_id, seq=verdict.seq, error=error)
                return
            res = result.res if 0 <= result.res <= 65_535 else 65_535
            detail = None if result.detail is None else printable(result.detail)[:200]
            done = Completed(res=res, detail=detail, bin=int(verdict.bin))
            try:
                await self.dedupe.put(key, done)
            except CellError as exc:  # the robot acted: ack anyway, a missing ack would sort it again
                log.error("bridge.dedupe_failed", cell=cell.cell_id, seq=verdict.seq, error=str(exc))
        ack = Ack(
            cell_id=key.cell_id, boot_id=key.boot_id, seq=key.seq, bin=Bin(done.bin), res=done.res, detail=done.detail
        )
        await self.send(cell.identity, ack)

    # liveness

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            now, window = time.monotonic(), self.heartbeat_s * self.missed_beats
            for cell in list(self._cells.values()):
                if now - cell.last_heard <= window:
                    await self._beat_to(cell)
                elif cell.up:
                    cell.up = False
                    log.warning("bridge.cell_down", cell=cell.cell_id, silent_s=round(now - cell.last_heard, 3))

    async def _beat_to(self, cell: _Cell) -> None:
        assert self.boot_id is not None
        await self.send(cell.identity, Heartbeat(sender=SENDER, boot_id=self.boot_id))

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        """Count failed handshakes: a peer without CURVE, or with a key ZAP denied."""
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            kind = _HANDSHAKE_FAILED.get(int(event["event"]), str(event["event"]))
            self._handshake_failed[kind] += 1
            if noteworthy(sum(self._handshake_failed.values())):
                log.warning("bridge.handshake_failed", kind=kind, total=sum(self._handshake_failed.values()))

    def health(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "boot_id": self.boot_id,
            "running": self._sock is not None,
            "security": self._security,
            "cells": {
                c.cell_id: {"up": c.up, "last_heard_s_ago": round(now - c.last_heard, 3), "boot_id": c.boot_id}
                for c in self._cells.values()
            },
            "received": self._counts["received"],
            "parts_sent": self._counts["parts_sent"],
            "acks_sent": self._counts["acks_sent"],
            "duplicates": self._counts["duplicates"],
            "cell_moves": self._counts["cell_moved"],
            "superseded": self._counts["superseded"],
            "readies_skipped": self._counts["readies_skipped"],
            "in_progress_ignored": self._counts["in_progress_ignored"],
            "busy_dropped": self._counts["busy_dropped"],
            "sort_errors": self._counts["sort_errors"],
            "offer_errors": self._counts["offer_errors"],
            "refused_sent": dict(self._refused_sent),
            "refused_by_cells": dict(self._refused_by_cells),
            "auth_denied": 0 if self.auth is None else self.auth.denied,
            "handshake_failed": dict(self._handshake_failed),
            "dropped_sends": dict(self._dropped),
            "robot": self.robot.health(),
        }
