"""The cell's end of the robot link: a ZeroMQ DEALER (CURVE client) connected to the bridge.

One part request is open at a time. ``request_part`` opens it with a fresh request id, sends
``ready`` and returns the one ``part`` that answers it; every other ``part`` (no request open,
a stale id, a second answer) and every frame that is not a valid message is answered with
``refused``, counted and logged, and never reaches the pipeline. Nothing is queued in here:
the socket's high-water marks bound what libzmq holds, and ``refused`` and heartbeats are
sent with NOBLOCK and dropped (counted) when the bridge does not read.

Liveness: every valid message from the bridge is a sign of life. Silence for
``heartbeat_s * missed_beats`` takes the link down (cell blocked with key ``link``, the open
request reset with ``LinkReset``); the next valid message brings it up and calls ``on_up``.
A bridge heartbeat with a new ``boot_id`` (the bridge restarted) resets the open request and
calls ``on_up`` too. The link starts down at every ``connect`` until the bridge is heard.

With keys the socket is a CURVE client pinned to the bridge's public key: a peer without
the bridge's secret key fails the handshake, which the socket monitor logs and counts
(``robot_link.handshake_failed``); nothing is ever sent to it (``IMMEDIATE``: messages go only
to connections whose handshake completed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from cellctl.config import RobotLinkSettings
from cellctl.drivers import CellError, DriverInitError
from cellctl.link.keys import KeyFileError, LinkKeys
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
    decode_cell_bound,
    encode,
)
from cellctl.state import CellState
from cellctl.text import printable

log = structlog.get_logger("cellctl.robot_link")

BLOCK_KEY = "link"
HWM = 100  # messages per direction libzmq may hold for this socket
RECENT_REQUESTS = 64  # closed request ids remembered, to tell "already answered" from "stale"
PREVIEW_CHARS = 80  # of a refused frame in the log: enough to recognise it, never a payload
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000  # back-off of libzmq's reconnects (a rogue that keeps failing the handshake)
GREET_TRIES, GREET_RETRY_S = 50, 0.01  # the greeting after a handshake: up to 0.5 s for the pipe to attach
HANDSHAKE_LOG_EVERY = 10  # after the first failure of a streak, one log line per this many
HANDSHAKE_FAILED: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the peer does not hold the secret key of the pinned bridge key, "
    "or is no CURVE server",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error during the handshake",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the bridge refused this cell's key (not in its allow-list?)",
}
# libzmq announces every reconnect it schedules or makes (CONNECT_RETRIED, CONNECTED); a
# disconnect followed by neither within ABANDONED_AFTER_S is a session it ended for good. The
# wait paces our own reconnects, so a rogue that keeps breaking the protocol cannot make us spin
RECONNECTING = int(zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECTED)
ABANDONED_AFTER_S = RECONNECT_IVL_MAX_MS / 1e3
MONITOR_EVENTS = functools.reduce(
    operator.or_, HANDSHAKE_FAILED, int(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED) | RECONNECTING
)


class LinkReset(CellError):
    """The open part request ended without an answer: the link went down or the bridge
    restarted. Wait until the cell is unblocked, then ask again (a new request)."""


@dataclass
class _Request:
    request_id: str
    answer: asyncio.Future[Part]
    ready: bytes = b""
    sent: bool = False  # the ready is queued on the socket


def _ignore_ack(ack: Ack) -> None:
    log.warning("robot_link.ack_unhandled", seq=ack.seq)


def _nothing() -> None:
    pass


class RobotLink:
    def __init__(
        self, settings: RobotLinkSettings, cell_id: str, boot_id: str, state: CellState, keys: LinkKeys | None
    ) -> None:
        self.settings = settings
        self.cell_id = cell_id
        self.boot_id = boot_id  # this run of the daemon; verdicts and readies carry it
        self.state = state
        self.keys = keys if settings.security == "curve" else None  # none: plain, whatever was given
        self.on_ack: Callable[[Ack], None] = _ignore_ack  # app.py: outbox.on_ack
        self.on_up: Callable[[], None] = _nothing  # app.py: outbox.on_link_up
        self.bridge_boot_id: str | None = None
        self.refused: Counter[str] = Counter()  # what the cell refused, by reason
        self.refused_by_bridge: Counter[str] = Counter()
        self.handshake_failures = 0
        self.dropped: Counter[str] = Counter()  # sends dropped at the high-water mark, by message type
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._open: _Request | None = None
        self._recent: OrderedDict[str, bool] = OrderedDict()  # closed request id -> was answered
        self._up = False
        self._last_heard_s = 0.0
        self._down_since_s = time.monotonic()
        self._down_s_total = 0.0
        self._failure_streak = 0
        self._connect_events = 0  # libzmq's reconnects seen: a disconnect after which none comes is final

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> None:
        """Open the socket and start reading; the link is down until the bridge is heard."""
        if self.settings.security == "curve" and self.keys is None:
            raise KeyFileError("robot.security is curve but no keys were loaded")
        self._ctx = zmq.asyncio.Context()  # one per link: close() terminates it whole
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.keys is None:
            # plain: the bridge knows a cell by its socket identity. With CURVE it knows it by
            # its key, and the bridge assigns the identity: a chosen one could be another
            # cell's, and the bridge would route that cell's messages to whoever chose it
            sock.setsockopt_string(zmq.IDENTITY, self.cell_id)
        sock.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        if self.keys is not None:
            sock.curve_secretkey = self.keys.secret_key
            sock.curve_publickey = self.keys.public_key
            sock.curve_serverkey = self.keys.bridge_public_key
        else:
            log.warning(
                "robot_link.insecure",
                endpoint=self.settings.endpoint,
                why="robot.security is none: the link is neither encrypted nor authenticated",
            )
        self._monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        self._sock = sock
        self._up = False
        self._down_since_s = time.monotonic()
        self.state.block(BLOCK_KEY, "robot link: waiting for the bridge")
        try:
            sock.connect(self.settings.endpoint)
        except zmq.ZMQError as exc:  # e.g. tcp://no-port: nothing to retry, the config is wrong
            await self.close()
            raise DriverInitError(f"robot.endpoint {self.settings.endpoint!r}: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self._read(sock), name="robot-link-reader"),
            asyncio.create_task(self._beat(), name="robot-link-heartbeat"),
            asyncio.create_task(self._watch(self._monitor), name="robot-link-monitor"),
        ]
        log.info(
            "robot_link.connecting",
            endpoint=self.settings.endpoint,
            security="curve" if self.keys is not None else "none",
            bridge_public_key=self._pinned(),
            boot_id=self.boot_id,
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._reset("the link closed")
        if self._sock is not None:
            self._sock.disable_monitor()
        for sock in (self._monitor, self._sock):
            if sock is not None:
                sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._sock = self._monitor = self._ctx = None
        if self._up:
            self._up = False
            self._down_since_s = time.monotonic()

    @property
    def up(self) -> bool:
        return self._up

    def health(self) -> dict[str, Any]:
        down_s = self._down_s_total + (0.0 if self._up else time.monotonic() - self._down_since_s)
        return {
            "up": self._up,
            "down_s_total": round(down_s, 3),
            "refused": dict(self.refused),
            "refused_by_bridge": dict(self.refused_by_bridge),
            "handshake_failures": self.handshake_failures,
            "dropped_sends": sum(self.dropped.values()),
            "dropped_by_type": dict(self.dropped),
            "bridge_boot_id": self.bridge_boot_id,
        }

    # ------------------------------------------------------------------ the two verbs
    async def request_part(self, accepted: str | None) -> Part:
        """Offer the fixture (``accepted``: the last part durably taken from it) with a fresh
        request id and return the part that answers it. LinkReset if the link goes down or the
        bridge restarts first (or the link is down now)."""
        if self._sock is None:
            raise CellError("robot link: connect() first")
        if not self._up:
            raise LinkReset("robot link down")
        if self._open is not None:  # its caller stopped waiting without closing it: it is over
            self._close(self._open, LinkReset("superseded by a new request"))
        request = _Request(secrets.token_hex(8), asyncio.get_running_loop().create_future())
        self._open = request
        ready = Ready(cell_id=self.cell_id, boot_id=self.boot_id, request_id=request.request_id, accepted=accepted)
        request.ready = encode(ready)
        log.info("robot_link.ready", request_id=request.request_id, accepted=accepted)
        self._send_ready(request)  # if it cannot be queued now: again at every beat and handshake
        try:
            return await request.answer
        finally:
            if self._open is request:
                self._close(request, LinkReset("no longer waited for"))
            if request.answer.done() and not request.answer.cancelled():
                request.answer.exception()  # retrieved: a reset nobody waited for is no error

    def send_verdict(self, verdict: Verdict) -> bool:
        """Queue ``verdict`` without waiting; False if it could not be queued (no completed
        connection, or the high-water mark is reached)."""
        return self._send_nowait(verdict, count_drop=False)

    # ------------------------------------------------------------------ reading
    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                self._handle(frames)
            except Exception as exc:  # one bad message never ends the reader (logged with its traceback)
                log.error("robot_link.handle_failed", error=f"{type(exc).__name__}: {exc}", exc_info=True)

    def _handle(self, frames: list[bytes]) -> None:
        message = decode_cell_bound(frames)
        if isinstance(message, Rejected):
            self._refuse_frames(message, frames)
            return
        came_up = self._heard()
        if isinstance(message, Part):
            self._on_part(message, len(frames[0]))
        elif isinstance(message, Ack):
            self._call(self.on_ack, message)
        elif isinstance(message, Heartbeat):
            self._on_heartbeat(message, came_up)
        else:  # Refused: the bridge did not take one of ours; never answered
            self.refused_by_bridge[message.reason.value] += 1
            log.warning(
                "robot_link.refused_by_bridge",
                reason=message.reason.value,
                detail=message.detail,
                request_id=message.request_id,
                part_id=message.part_id,
            )

    def _on_part(self, part: Part, size: int) -> None:
        request = self._open
        if request is not None and part.request_id == request.request_id and not request.answer.done():
            self._open = None
            self._remember(request.request_id, answered=True)
            request.answer.set_result(part)
            log.info("robot_link.part", request_id=part.request_id, part_id=part.part_id, profile=part.profile)
            return
        answered = self._recent.get(part.request_id)
        if answered:
            reason, detail = Refusal.ALREADY_ANSWERED, "this request was answered already"
        elif answered is None and request is None:
            reason, detail = Refusal.NO_OPEN_REQUEST, "the cell has no part request open"
        else:
            reason, detail = Refusal.STALE_REQUEST, "not the open request"
        self._refuse(Refused(reason=reason, detail=detail, request_id=part.request_id, part_id=part.part_id))
        log.warning(
            "robot_link.refused",
            reason=reason.value,
            detail=detail,
            request_id=part.request_id,
            part_id=part.part_id,
            open_request=request.request_id if request is not None else None,
            size=size,
        )

    def _on_heartbeat(self, beat: Heartbeat, came_up: bool) -> None:
        previous, self.bridge_boot_id = self.bridge_boot_id, beat.boot_id
        if previous is None or previous == beat.boot_id:
            return
        log.warning("robot_link.bridge_restarted", previous_boot_id=previous, boot_id=beat.boot_id)
        self._reset("the bridge restarted")
        if not came_up:  # coming up has called on_up already
            self._call(self.on_up)

    def _refuse_frames(self, rejected: Rejected, frames: list[bytes]) -> None:
        self._refuse(rejected.refused())
        first = frames[0] if frames else b""
        log.warning(
            "robot_link.refused",
            reason=rejected.reason.value,
            detail=rejected.detail,
            frames=len(frames),
            size=sum(len(f) for f in frames),
            preview=printable(first[:PREVIEW_CHARS].decode("utf-8", "replace"))[:PREVIEW_CHARS],
        )

    def _refuse(self, refused: Refused) -> None:
        self.refused[refused.reason.value] += 1
        self._send_nowait(refused, count_drop=True)

    # ------------------------------------------------------------------ liveness
    def _heard(self) -> bool:
        """A sign of life; True if it brought the link up."""
        now = time.monotonic()
        self._last_heard_s = now
        if self._up:
            return False
        self._up = True
        down_s = now - self._down_since_s
        self._down_s_total += down_s
        self.state.unblock(BLOCK_KEY)
        log.info("robot_link.up", down_s=round(down_s, 3), endpoint=self.settings.endpoint)
        self._call(self.on_up)
        return True

    def _go_down(self, why: str) -> None:
        if not self._up:
            return
        self._up = False
        self._down_since_s = time.monotonic()
        self.state.block(BLOCK_KEY, f"robot link down: {why}")
        log.error("robot_link.down", why=why, endpoint=self.settings.endpoint)
        self._reset(why)

    async def _beat(self) -> None:
        """Our heartbeat every ``heartbeat_s``; the bridge's silence checked as often."""
        limit_s = self.settings.heartbeat_s * self.settings.missed_beats
        while True:
            self._send_nowait(Heartbeat(sender=self.cell_id, boot_id=self.boot_id), count_drop=self._up)
            if self._open is not None:
                self._send_ready(self._open)
            await asyncio.sleep(self.settings.heartbeat_s)
            silent_s = time.monotonic() - self._last_heard_s
            if self._up and silent_s > limit_s:
                self._go_down(f"no message from the bridge for {silent_s:.1f} s")

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        """Handshake outcomes of the socket: failures logged and counted, a success greeted
        with a heartbeat at once (the bridge learns of this cell without waiting a period)."""
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            kind = event["event"]
            if kind in HANDSHAKE_FAILED:
                self.handshake_failures += 1
                self._failure_streak += 1
                if self._failure_streak % HANDSHAKE_LOG_EVERY == 1:
                    log.error(
                        "robot_link.handshake_failed",
                        endpoint=self.settings.endpoint,
                        why=HANDSHAKE_FAILED[kind],
                        pinned_key="robot.bridge_public_key",
                        bridge_public_key=self._pinned(),
                        streak=self._failure_streak,
                        failures=self.handshake_failures,
                    )
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._failure_streak = 0
                log.info("robot_link.connected", endpoint=self.settings.endpoint)
                await self._greet()
            elif kind == zmq.EVENT_DISCONNECTED:
                log.info("robot_link.disconnected", endpoint=self.settings.endpoint)
                asyncio.get_running_loop().call_later(
                    ABANDONED_AFTER_S, self._reconnect_if_abandoned, self._connect_events
                )
            elif kind & RECONNECTING:
                self._connect_events += 1

    def _reconnect_if_abandoned(self, seen: int) -> None:
        """libzmq 4.3 ends a session for good after a protocol error (a peer without CURVE on
        the endpoint, a frame over MAXMSGSIZE, a corrupted or injected frame), with a
        disconnect and no retry: connect again ourselves, or the link would stay down until
        the daemon restarts."""
        if self._sock is None or self._connect_events != seen:
            return
        log.warning("robot_link.reconnecting", endpoint=self.settings.endpoint, why="libzmq ended the session")
        self._reconnect()

    # ------------------------------------------------------------------ helpers
    async def _greet(self) -> None:
        """A heartbeat (and the open request's ready) right after a handshake. The monitor's
        event can come before libzmq attaches the new pipe (IMMEDIATE: until then a send finds
        no peer), so a refused greeting is tried again a few times rather than left to the next
        period."""
        for _attempt in range(GREET_TRIES):
            if self._send_nowait(Heartbeat(sender=self.cell_id, boot_id=self.boot_id), count_drop=False):
                if self._open is not None:
                    self._send_ready(self._open)
                return
            await asyncio.sleep(GREET_RETRY_S)

    def _reconnect(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(zmq.ZMQError):  # already gone: the connect below is all we need
            self._sock.disconnect(self.settings.endpoint)
        self._sock.connect(self.settings.endpoint)

    def _reset(self, why: str) -> None:
        if self._open is not None:
            log.info("robot_link.request_reset", request_id=self._open.request_id, why=why)
            self._close(self._open, LinkReset(f"part request reset: {why}"))

    def _close(self, request: _Request, exc: LinkReset) -> None:
        self._open = None
        self._remember(request.request_id, answered=False)
        if not request.answer.done():
            request.answer.set_exception(exc)

    def _remember(self, request_id: str, *, answered: bool) -> None:
        self._recent[request_id] = answered
        while len(self._recent) > RECENT_REQUESTS:
            self._recent.popitem(last=False)

    def _send_ready(self, request: _Request) -> None:
        if not request.sent:
            request.sent = self._send_nowait_raw(request.ready)

    def _send_nowait(self, message: Message, *, count_drop: bool) -> bool:
        sent = self._send_nowait_raw(encode(message))
        if not sent and count_drop:
            self.dropped[getattr(message, "type", "?")] += 1
        return sent

    def _send_nowait_raw(self, data: bytes) -> bool:
        """Every send of the link is NOBLOCK, so no send ever waits on the socket and the
        asyncio socket resolves each one at once (a waiting send would queue later ones
        behind it)."""
        if self._sock is None:
            return False
        # the asyncio socket resolves a NOBLOCK send before returning its future
        done = cast("asyncio.Future[object]", self._sock.send(data, zmq.NOBLOCK))
        if not done.done():  # not possible while no send waits; never leave one pending
            done.cancel()
            return False
        error = done.exception()
        if error is None:
            return True
        if not isinstance(error, zmq.Again):
            log.error("robot_link.send_failed", error=str(error))
        return False

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - the reader outlives a failing subscriber
            log.error("robot_link.callback_failed", callback=getattr(callback, "__qualname__", "?"), error=str(exc))

    def _pinned(self) -> str | None:
        return self.keys.bridge_public_key.decode("ascii") if self.keys is not None else None
