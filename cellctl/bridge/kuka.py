"""The robot behind the bridge: a KUKA KRC over KUKA.EthernetKRL (EKI), XML over TCP.

The robot's EKI channel is the server (``<EXTERNAL><TYPE>Client</TYPE>`` in its config,
``cellctl/bridge/EkiCellctl.xml``; ports 54600-54615); ``KukaRobot`` is the client and keeps
one connection up, reconnecting with a deterministic exponential back-off (0.1 s doubling to
``reconnect_max_s``). Messages: ``cellctl.bridge.eki``.

- ``offer``: sends ``<Cell><Ready/></Cell>`` and waits for the ``<Robot><Part/></Robot>`` that
  echoes its Req, however long the robot takes to find a part; after a reconnection the Ready
  is sent again (the KRL program answers a Req it already answered with the part still in the
  fixture).
- ``sort``: sends ``<Sort><Part/></Sort>`` and waits ``reply_timeout_s`` for the ``Ack`` with its
  Seq. A timeout or a lost connection raises: the bridge acknowledges nothing to the cell, which
  sends the verdict again, and the bridge calls ``sort`` again. The robot may then receive the
  same Sort twice, so the KRL program must act once per (Cell, Boot, Seq) and acknowledge a Sort
  it already did again with the same Res, without moving the part (the bridge deduplicates
  completed verdicts too, but cannot know whether a Sort lost with the connection was done).
- EKI's data memory holds ``BUFFERING Limit`` values per element; beyond it the robot closes the
  connection. ``KukaRobot`` never has more than ``buffer_limit`` Ready/Sort messages unanswered on
  a connection and waits for room instead. A message whose answer never came keeps its place
  until the answer arrives or the connection ends (the robot may still hold it).
- The Ack carries only Seq, and seqs are per cell: two sorts with the same Seq (of two cells) are
  never outstanding together. A second sort of the same (cell, boot, seq) joins the first.
- Heartbeats ``<Cell><Beat/></Cell>`` every ``heartbeat_s``; a robot silent for
  ``missed_beats * heartbeat_s`` (the KRL program sends ``<Robot><Beat/></Robot>``) is
  disconnected and reconnected. Silent means no valid EKI message: a robot that sends only
  garbage is silent too. Malformed robot input is counted and logged (the first ten, then every
  thousandth), never fatal; a large read is parsed in slices, yielding to the event loop between
  them, so a flood cannot hold up the heartbeats of the link or of the cells.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from cellctl.bridge.eki import (
    EkiAck,
    EkiCellBeat,
    EkiError,
    EkiPart,
    EkiReady,
    EkiSort,
    EkiStreamParser,
    ToRobot,
    encode,
)
from cellctl.bridge.robot import Placed, SortResult
from cellctl.drivers import DriverIOError, DriverTimeout
from cellctl.link.aio import cancel_and_wait, noteworthy
from cellctl.link.protocol import Ready, Refused, Verdict

log = structlog.get_logger("cellctl.bridge.kuka")

RECONNECT_FIRST_S = 0.1  # first retry; doubles per failed attempt up to reconnect_max_s
CONNECT_TIMEOUT_S = 5.0  # one TCP connect attempt
READ_BYTES = 65_536
# the stream parser runs ~0.5 MB/s in Python: ~8 ms per slice between two turns of the event loop
PARSE_SLICE_BYTES = 4096
EKI_BUFFER_MAX = 512  # the largest BUFFERING Limit EKI accepts
UNSENDABLE_RES = 65_535  # the Res of a sort refused here, never sent (no KRL program uses it)


class RobotUnreachable(DriverIOError):
    """No connection to the robot, or it was lost before the robot answered."""


class RobotTimeout(DriverTimeout):
    """The robot did not answer within reply_timeout_s."""


def _consume(future: asyncio.Future[SortResult]) -> None:
    # an outstanding sort's waiter may have timed out: nobody else reads its exception
    if not future.cancelled():
        future.exception()


@dataclass
class _SortEntry:
    ident: tuple[str, str]  # (cell_id, boot_id): with the Seq, which verdict this is
    future: asyncio.Future[SortResult]


@dataclass
class _Link:
    """One TCP connection to the robot and what it owes us."""

    writer: asyncio.StreamWriter
    readies: set[str] = field(default_factory=set)  # Req of Ready sent, not answered
    sorts: dict[int, _SortEntry] = field(default_factory=dict)  # Seq of Sort sent, not acknowledged
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def outstanding(self) -> int:
        return len(self.readies) + len(self.sorts)


class KukaRobot:
    """``RobotSide`` over KUKA.EthernetKRL. ``start()`` returns at once; the connection comes up
    (and comes back) in the background, and ``offer``/``sort`` wait for it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        buffer_limit: int = 16,
        reply_timeout_s: float = 5.0,
        heartbeat_s: float = 1.0,
        reconnect_max_s: float = 10.0,
        missed_beats: int = 3,
    ) -> None:
        if not 1 <= buffer_limit <= EKI_BUFFER_MAX:
            raise ValueError(f"buffer_limit must be 1..{EKI_BUFFER_MAX} (EKI BUFFERING Limit)")
        if min(reply_timeout_s, heartbeat_s, reconnect_max_s) <= 0 or missed_beats < 1:
            raise ValueError("timeouts and periods must be positive, missed_beats at least 1")
        self._host, self._port = host, port
        self._buffer_limit = buffer_limit
        self._reply_timeout_s = reply_timeout_s
        self._heartbeat_s = heartbeat_s
        self._reconnect_max_s = reconnect_max_s
        self._silence_s = heartbeat_s * missed_beats
        self._link: _Link | None = None
        self._changed = asyncio.Event()  # pulsed (set, then replaced) whenever room or the link changes
        self._offers: dict[str, asyncio.Future[Placed]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = True
        self._counts: Counter[str] = Counter()
        self._malformed: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._max_outstanding = 0

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("KukaRobot already started")
        self._closed = False
        self._task = asyncio.create_task(self._run(), name="kuka-link")
        log.info("kuka.started", host=self._host, port=self._port, buffer_limit=self._buffer_limit)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for future in self._offers.values():
            if not future.done():
                future.set_exception(RobotUnreachable("the KUKA client was closed"))
                future.exception()  # the offer coroutine re-raises its own; nothing else reads this
        self._pulse()

    # --- RobotSide -----------------------------------------------------------------------------

    async def offer(self, cell_id: str, ready: Ready) -> Placed | None:
        message = EkiReady(cell_id=cell_id, request_id=ready.request_id, accepted=ready.accepted)
        request_id = ready.request_id
        future = self._offers.get(request_id)
        if future is not None:  # the same request offered again while open: wait for the same part
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._offers[request_id] = future
        try:
            while not future.done():
                # a Req still unanswered on this connection (its offer was cancelled, then made
                # again) is not sent twice: the robot's answer to the first one will do
                link = await self._room(joining=lambda link: request_id in link.readies)
                if request_id not in link.readies:
                    link.readies.add(request_id)
                    self._note_outstanding(link)
                    if not await self._write(link, message):
                        continue
                await self._first(future, link.lost)
            return future.result()
        finally:
            # cancelled (a newer ready superseded this one) or answered: no longer waiting. The Req
            # keeps its place in link.readies until the robot answers it or the connection ends.
            if self._offers.get(request_id) is future:
                del self._offers[request_id]

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult:
        try:
            message = EkiSort(
                seq=verdict.seq, bin=verdict.bin, part_id=verdict.part_id, cell_id=cell_id, boot_id=verdict.boot_id
            )
        except ValidationError as exc:
            # U+FFFE/U+FFFF pass the link's SafeName but are no XML characters: resending cannot
            # help, so this is a refusal (an alarm at the cell), not an error the cell retries
            log.error("kuka.unsendable", cell_id=cell_id, seq=verdict.seq, error=str(exc.errors()[0]["msg"]))
            return SortResult(res=UNSENDABLE_RES, detail="the verdict cannot be written as EKI XML")
        seq, ident = verdict.seq, (cell_id, verdict.boot_id)

        def can_send(link: _Link) -> bool:
            entry = link.sorts.get(seq)
            return entry is None or entry.ident == ident

        try:
            async with asyncio.timeout(self._reply_timeout_s):
                link = await self._room(can_send, joining=lambda link: seq in link.sorts)
        except TimeoutError:
            self._counts["timeouts"] += 1
            if self._link is None:
                raise RobotUnreachable(f"not connected to the robot (Sort {seq})") from None
            raise RobotTimeout(f"no room to send Sort {seq} within {self._reply_timeout_s} s") from None
        entry = link.sorts.get(seq)
        if entry is None:
            entry = _SortEntry(ident, asyncio.get_running_loop().create_future())
            entry.future.add_done_callback(_consume)
            link.sorts[seq] = entry
            self._note_outstanding(link)
            if not await self._write(link, message):
                raise RobotUnreachable(f"connection lost sending Sort {seq}")
        else:
            self._counts["sorts_joined"] += 1
        try:
            async with asyncio.timeout(self._reply_timeout_s):
                result = await asyncio.shield(entry.future)
        except TimeoutError:
            self._counts["timeouts"] += 1
            log.warning("kuka.sort_timeout", cell_id=cell_id, seq=seq, timeout_s=self._reply_timeout_s)
            raise RobotTimeout(f"no Ack for Sort {seq} within {self._reply_timeout_s} s") from None
        if result.res != 0:
            log.error("kuka.sort_refused", cell_id=cell_id, seq=seq, res=result.res)
        return result

    def refused(self, cell_id: str, refused: Refused) -> None:
        self._refused[refused.reason.value] += 1
        log.warning("kuka.cell_refused", cell_id=cell_id, reason=refused.reason.value, part_id=refused.part_id)

    def health(self) -> dict[str, object]:
        link = self._link
        return {
            "connected": link is not None and not link.lost.is_set(),
            "outstanding": link.outstanding if link is not None else 0,
            "max_outstanding": self._max_outstanding,
            "buffer_limit": self._buffer_limit,
            "connects": self._counts["connects"],
            "connect_failures": self._counts["connect_failures"],
            "disconnects": self._counts["disconnects"],
            "silences": self._counts["silences"],
            "room_waits": self._counts["room_waits"],
            "seq_waits": self._counts["seq_waits"],  # a sort waited for another cell's with its Seq
            "timeouts": self._counts["timeouts"],
            "sorts_joined": self._counts["sorts_joined"],
            "late_answers": self._counts["late_answers"],
            "unmatched": self._counts["unmatched"],
            "malformed": sum(self._malformed.values()),
            "malformed_by_reason": dict(self._malformed),
            "refused_by_cell": dict(self._refused),
        }

    # --- waiting ---------------------------------------------------------------------------------

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _room(
        self,
        can_send: Callable[[_Link], bool] = lambda link: True,
        joining: Callable[[_Link], bool] = lambda link: False,
    ) -> _Link:
        """The current connection once ``can_send`` and it holds fewer than ``buffer_limit``
        unanswered messages (``joining``: the message is already there, no room needed)."""
        counted: set[str] = set()
        while True:
            if self._closed:
                raise RobotUnreachable("the KUKA client is closed")
            changed, link = self._changed, self._link
            if link is not None and not link.lost.is_set():
                if can_send(link) and (joining(link) or link.outstanding < self._buffer_limit):
                    return link
                why = "room_waits" if can_send(link) else "seq_waits"
                if why not in counted:
                    counted.add(why)
                    self._counts[why] += 1
            await changed.wait()

    @staticmethod
    async def _first(future: asyncio.Future[Placed], lost: asyncio.Event) -> None:
        """Until the answer came or the connection it was asked on is gone."""
        waiter = asyncio.ensure_future(lost.wait())
        watched: list[asyncio.Future[Any]] = [future, waiter]
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waiter)

    def _note_outstanding(self, link: _Link) -> None:
        self._max_outstanding = max(self._max_outstanding, link.outstanding)

    async def _write(self, link: _Link, message: ToRobot) -> bool:
        if link.lost.is_set():
            return False
        try:
            link.writer.write(encode(message))
            await link.writer.drain()
        except (ConnectionError, OSError) as exc:
            self._lose(link, f"write failed: {exc}")
            return False
        return True

    # --- the connection --------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(self._host, self._port)
            except (OSError, TimeoutError) as exc:
                self._counts["connect_failures"] += 1
                delay_s = min(self._reconnect_max_s, RECONNECT_FIRST_S * 2**attempt)
                attempt = min(attempt + 1, 30)
                log.warning("kuka.connect_failed", host=self._host, port=self._port, error=str(exc), retry_s=delay_s)
                await asyncio.sleep(delay_s)
                continue
            link = _Link(writer)
            self._link = link
            self._counts["connects"] += 1
            log.info("kuka.connected", host=self._host, port=self._port)
            self._pulse()
            try:
                if await self._serve(reader, link):
                    attempt = 0  # the robot talked: a later loss starts the back-off afresh
            finally:
                self._lose(link, "connection closed")
                self._link = None
                writer.close()  # the transport is aborted already; this only marks the writer closed
                self._pulse()
            delay_s = min(self._reconnect_max_s, RECONNECT_FIRST_S * 2**attempt)
            attempt = min(attempt + 1, 30)
            await asyncio.sleep(delay_s)

    async def _serve(self, reader: asyncio.StreamReader, link: _Link) -> bool:
        """Read until the connection ends; True if the robot sent at least one valid message."""
        beats = asyncio.create_task(self._beat(link), name="kuka-heartbeat")
        parser = EkiStreamParser()
        heard = False
        loop = asyncio.get_running_loop()
        # silence is measured from the last valid message, not the last byte: garbage is no sign of life
        deadline = loop.time() + self._silence_s
        try:
            while not link.lost.is_set():
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.read(READ_BYTES)
                except TimeoutError:
                    return self._silent(heard)
                except (ConnectionError, OSError):
                    return heard
                if not data:
                    return heard
                if await self._parse(parser, link, data):
                    heard = True
                    deadline = loop.time() + self._silence_s
                elif loop.time() >= deadline:  # a read that finds bytes waiting never times out
                    return self._silent(heard)
            return heard
        finally:
            await cancel_and_wait(beats)

    async def _parse(self, parser: EkiStreamParser, link: _Link, data: bytes) -> bool:
        """Feed ``data`` to the parser a slice at a time; True if it held a valid message."""
        valid = False
        for start in range(0, len(data), PARSE_SLICE_BYTES):
            if start:
                await asyncio.sleep(0)  # let the heartbeats and the cells' messages through
                if link.lost.is_set():
                    break
            for item in parser.feed(data[start : start + PARSE_SLICE_BYTES]):
                valid |= not isinstance(item, EkiError)
                self._on_message(link, item)
        return valid

    def _silent(self, heard: bool) -> bool:
        self._counts["silences"] += 1
        log.error("kuka.silent", silent_s=self._silence_s)
        return heard

    async def _beat(self, link: _Link) -> None:
        while await self._write(link, EkiCellBeat()):
            await asyncio.sleep(self._heartbeat_s)

    def _lose(self, link: _Link, why: str) -> None:
        """The connection is gone: unanswered sorts fail now; offers send their Ready again later."""
        if link.lost.is_set():
            return
        link.lost.set()
        self._counts["disconnects"] += 1
        log.error("kuka.disconnected", why=why, unanswered_sorts=len(link.sorts), open_readies=len(link.readies))
        for seq, entry in link.sorts.items():
            if not entry.future.done():
                entry.future.set_exception(RobotUnreachable(f"connection lost before the Ack of Sort {seq}"))
        link.sorts.clear()
        link.readies.clear()
        link.writer.transport.abort()
        self._pulse()

    def _on_message(self, link: _Link, item: object) -> None:
        if isinstance(item, EkiError):
            self._malformed[item.reason.value] += 1
            total = sum(self._malformed.values())
            if noteworthy(total):  # a robot (or a wire) that sends only garbage is counted, not printed
                log.warning("kuka.malformed", reason=item.reason.value, detail=item.detail, total=total)
        elif isinstance(item, EkiPart):
            self._on_part(link, item)
        elif isinstance(item, EkiAck):
            self._on_ack(link, item)
        # EkiRobotBeat: a sign of life, nothing else

    def _on_part(self, link: _Link, part: EkiPart) -> None:
        if part.request_id not in link.readies:
            self._counts["unmatched"] += 1
            log.warning("kuka.part_unmatched", request_id=part.request_id, part_id=part.part_id)
            return
        link.readies.discard(part.request_id)
        self._pulse()
        future = self._offers.get(part.request_id)
        if future is None or future.done():
            self._counts["late_answers"] += 1  # the offer was cancelled (superseded) meanwhile
            log.info("kuka.part_late", request_id=part.request_id, part_id=part.part_id)
            return
        future.set_result(Placed(part_id=part.part_id, profile=part.profile))

    def _on_ack(self, link: _Link, ack: EkiAck) -> None:
        entry = link.sorts.pop(ack.seq, None)
        if entry is None:
            self._counts["unmatched"] += 1
            log.warning("kuka.ack_unmatched", seq=ack.seq, res=ack.res)
            return
        self._pulse()
        detail = None if ack.res == 0 else f"the robot refused the sort (Res={ack.res})"
        entry.future.set_result(SortResult(res=ack.res, detail=detail))


__all__ = ["UNSENDABLE_RES", "KukaRobot", "RobotTimeout", "RobotUnreachable"]
