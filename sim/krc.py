"""A simulated KUKA KRC with its EthernetKRL channel: a loopback TCP server speaking the robot's
side of ``cellctl.bridge.eki``, in front of a simulated robot (``offer``/``sort``).

What it models of the real EKI server: one client at a time (a second connection is refused);
the data memory holds ``buffer_limit`` unanswered Ready/Sort messages and drops what arrives
beyond it (counted: the PC must never cause that; the real EKI also closes the connection);
the KRL program handles Ready messages and Sort messages in two FIFO lanes (a pick-and-place
does not wait behind a sort, nor a sort behind a part the input does not have yet); it acts
once per (Cell, Boot, Seq) and acknowledges a repeated Sort again with the first answer; a
Ready with a Req it already answered is answered with the same part. A message received on a
connection that closed before the KRL program took it is dropped (EKI_Clear at reconnection);
one being acted on when the connection drops completes, and its answer is lost.

What it does not model: EKI's per-element memories (one message = one slot here), the BUFFSIZE
byte limit, ALIVE pings, and the time the KRL program takes (that is the robot's ``offer``/``sort``).

Faults, switchable at run time: ``disconnect()`` drops the connection now; ``garbage(n)`` sends
``n`` malformed or oversized documents to the PC, each followed by a heartbeat.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from cellctl.bridge.eki import (
    MAX_DOCUMENT_BYTES,
    EkiAck,
    EkiError,
    EkiPart,
    EkiReady,
    EkiRobotBeat,
    EkiSort,
    EkiStreamParser,
    FromRobot,
    encode,
)
from cellctl.bridge.robot import Placed, SortResult
from cellctl.link.aio import cancel_and_wait
from cellctl.link.protocol import Ready, Verdict
from cellctl.outcome import BIN_OF, Bin

log = structlog.get_logger("cellctl.sim.krc")

OUTCOME_OF = {b: o for o, b in BIN_OF.items()}
EKI_BOOT_ID = "via-eki"  # the EKI Ready carries no boot id; the robot does not need one
UNKNOWN_PROFILE = "unknown"  # a Sort for a part this KRC never announced
REMEMBERED = 10_000  # sorts (for dedupe) and part profiles kept
READ_BYTES = 65_536
BEAT = encode(EkiRobotBeat())
K = TypeVar("K")
V = TypeVar("V")


class KrcRobot(Protocol):
    """What the KRC needs of the robot behind it (``cellctl.bridge.robot.RobotSide``)."""

    async def offer(self, cell_id: str, ready: Ready) -> Placed | None: ...

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult: ...


def garbage_documents(max_document_bytes: int = MAX_DOCUMENT_BYTES) -> tuple[bytes, ...]:
    """Documents the PC must refuse, one error each, without losing the document that follows."""
    filler = b"X" * (2 * max_document_bytes)
    return (
        b'<Robot><Part Req="r" Id="' + filler + b'"/></Robot>',  # oversized
        b'<!DOCTYPE Robot [<!ENTITY a "aaaaaaaaaa">]>',  # a DTD with an entity
        b"<?robot sort-all?>",  # a processing instruction
        b'<Robot><Teleport To="9"/></Robot>',  # an unknown element
        b'<Robot><Ack Seq="4x2" Res="0"/></Robot>',  # a number that is not one
        b'<Robot><Part Req="r" Id="\xff\xfe"/></Robot>',  # not UTF-8
        b'<Robot><Beat Now="1"/></Robot>',  # an unknown attribute
        b'<Robot><Ack Seq="7"',  # truncated
        b"\x00\x01binary\xff",  # not XML at all
    )


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    unanswered: int = 0  # Ready/Sort messages in the data memory or being acted on
    closed: bool = False

    def send(self, data: bytes) -> bool:
        if self.closed or self.writer.is_closing():
            return False
        self.writer.write(data)
        return True


@dataclass
class _Item:
    connection: _Connection
    message: EkiReady | EkiSort


@dataclass
class _Offer:
    request_id: str
    placed: Placed


@dataclass
class KrcCounts:
    sorted_bins: Counter[int] = field(default_factory=Counter)  # parts put in each bin (res 0)
    sorts_refused: int = 0  # sorts the robot answered with res != 0
    duplicate_sorts: int = 0  # a Sort already done, acknowledged again without acting
    repeated_readies: int = 0  # a Ready with a Req already answered, answered with the same part
    dropped: int = 0  # messages beyond buffer_limit
    garbage_received: int = 0  # documents from the PC the parser refused
    garbage_sent: int = 0
    connections: int = 0
    refused_connections: int = 0  # a second client while one is connected
    disconnects: int = 0  # disconnect() faults
    robot_errors: int = 0  # the robot's offer/sort raised
    max_unanswered: int = 0


class SimKrc:
    def __init__(
        self,
        robot: KrcRobot,
        host: str = "127.0.0.1",
        port: int = 0,
        buffer_limit: int = 16,
        *,
        heartbeat_s: float = 1.0,
        max_document_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self._robot = robot
        self._host, self._port = host, port
        self._buffer_limit = buffer_limit
        self._heartbeat_s = heartbeat_s
        self._max_document_bytes = max_document_bytes
        self.counts = KrcCounts()
        self._server: asyncio.Server | None = None
        self._connection: _Connection | None = None
        self._readies: asyncio.Queue[_Item] = asyncio.Queue()
        self._sorts: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()  # the two lanes
        self._clients: set[asyncio.Task[None]] = set()  # asyncio's tasks running _accept
        self._done: OrderedDict[tuple[str, str, int], SortResult] = OrderedDict()
        self._offered: dict[str, _Offer] = {}  # cell -> its last answered Ready
        self._profiles: OrderedDict[str, str] = OrderedDict()  # part id -> profile it was announced with

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SimKrc not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        self._spawn(self._lane(self._readies), "krc-ready-lane")
        self._spawn(self._lane(self._sorts), "krc-sort-lane")
        log.info("krc.listening", host=self._host, port=self.port, buffer_limit=self._buffer_limit)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.disconnect(fault=False)
        # not cancelled: asyncio's stream callback cannot take a cancelled client task (3.11); the
        # aborted connection ends them
        await asyncio.gather(*self._clients, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # --- faults --------------------------------------------------------------------------------

    def disconnect(self, *, fault: bool = True) -> bool:
        """Drop the PC's connection now; False if there was none."""
        connection = self._connection
        if connection is None:
            return False
        self._drop(connection)
        connection.writer.transport.abort()
        if fault:
            self.counts.disconnects += 1
            log.warning("krc.disconnect_fault")
        return True

    def garbage(self, n: int) -> int:
        """Send ``n`` documents the PC must refuse (each followed by a heartbeat); how many went."""
        connection = self._connection
        if connection is None:
            return 0
        documents = garbage_documents(self._max_document_bytes)
        sent = 0
        while sent < n and connection.send(documents[self.counts.garbage_sent % len(documents)] + BEAT):
            sent += 1
            self.counts.garbage_sent += 1
        log.warning("krc.garbage_fault", documents=sent)
        return sent

    def health(self) -> dict[str, object]:
        counts = self.counts
        return {
            "connected": self.connected,
            "sorted_bins": {int(k): v for k, v in sorted(counts.sorted_bins.items())},
            "sorts_refused": counts.sorts_refused,
            "duplicate_sorts": counts.duplicate_sorts,
            "repeated_readies": counts.repeated_readies,
            "dropped": counts.dropped,
            "garbage_received": counts.garbage_received,
            "garbage_sent": counts.garbage_sent,
            "connections": counts.connections,
            "refused_connections": counts.refused_connections,
            "disconnects": counts.disconnects,
            "robot_errors": counts.robot_errors,
            "max_unanswered": counts.max_unanswered,
        }

    # --- the EKI server ------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # so that close() waits for it
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        if self._connection is not None:  # the EKI server takes one client
            self.counts.refused_connections += 1
            writer.transport.abort()
            return
        connection = _Connection(writer)
        self._connection = connection
        self.counts.connections += 1
        log.info("krc.connected", peer=str(writer.get_extra_info("peername")))
        beats = asyncio.create_task(self._beat(connection), name="krc-heartbeat")
        parser = EkiStreamParser(self._max_document_bytes, sender="pc")
        try:
            while not connection.closed:
                try:
                    data = await reader.read(READ_BYTES)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                for item in parser.feed(data):
                    self._receive(connection, item)
        finally:
            self._drop(connection)
            await cancel_and_wait(beats)
            writer.transport.abort()
            writer.close()

    def _drop(self, connection: _Connection) -> None:
        connection.closed = True
        if self._connection is connection:
            self._connection = None
            log.info("krc.disconnected")

    async def _beat(self, connection: _Connection) -> None:
        while connection.send(BEAT):
            await asyncio.sleep(self._heartbeat_s)

    def _receive(self, connection: _Connection, item: object) -> None:
        if isinstance(item, EkiError):
            self.counts.garbage_received += 1
            log.warning("krc.malformed", reason=item.reason.value, detail=item.detail)
            return
        if not isinstance(item, EkiReady | EkiSort):
            return  # the PC's heartbeat
        if connection.unanswered >= self._buffer_limit:
            self.counts.dropped += 1  # the data memory is full
            log.error("krc.buffer_overflow", limit=self._buffer_limit, message=type(item).__name__)
            return
        connection.unanswered += 1
        self.counts.max_unanswered = max(self.counts.max_unanswered, connection.unanswered)
        lane = self._readies if isinstance(item, EkiReady) else self._sorts
        lane.put_nowait(_Item(connection, item))

    async def _lane(self, queue: asyncio.Queue[_Item]) -> None:
        """One KRL task: takes its messages in order, one at a time."""
        while True:
            item = await queue.get()
            if item.connection.closed:
                continue  # cleared with the connection it came on
            try:
                message = item.message
                answer = await (self._ready(message) if isinstance(message, EkiReady) else self._sort(message))
            except Exception as exc:  # noqa: BLE001 - a failing sim robot is counted, the KRC goes on
                self.counts.robot_errors += 1
                log.error("krc.robot_failed", error=f"{type(exc).__name__}: {exc}")
                answer = None
            item.connection.unanswered -= 1
            if answer is not None:
                item.connection.send(encode(answer))

    async def _ready(self, ready: EkiReady) -> FromRobot | None:
        last = self._offered.get(ready.cell_id)
        if last is not None and last.request_id == ready.request_id:
            self.counts.repeated_readies += 1  # sent again after a reconnection: the same part
            placed = last.placed
        else:
            request = Ready(
                cell_id=ready.cell_id, boot_id=EKI_BOOT_ID, request_id=ready.request_id, accepted=ready.accepted
            )
            answer = await self._robot.offer(ready.cell_id, request)
            if answer is None:
                return None  # no part to give: the request stays open
            placed = answer
            self._offered[ready.cell_id] = _Offer(ready.request_id, placed)
            self._remember(self._profiles, placed.part_id, placed.profile or UNKNOWN_PROFILE)
        return EkiPart(request_id=ready.request_id, part_id=placed.part_id, profile=placed.profile)

    async def _sort(self, sort: EkiSort) -> FromRobot | None:
        key = (sort.cell_id, sort.boot_id, sort.seq)
        result = self._done.get(key)
        if result is not None:
            self.counts.duplicate_sorts += 1
            return EkiAck(seq=sort.seq, res=result.res)
        verdict = Verdict(
            cell_id=sort.cell_id,
            boot_id=sort.boot_id,
            seq=sort.seq,
            request_id=None,
            part_id=sort.part_id,
            profile=self._profiles.get(sort.part_id, UNKNOWN_PROFILE),
            verdict=OUTCOME_OF[Bin(sort.bin)],
            bin=Bin(sort.bin),
            reason="via EKI",
            max_score=None,
            latency_ms=0.0,
        )
        result = await self._robot.sort(sort.cell_id, verdict)
        self._remember(self._done, key, result)
        if result.res == 0:
            self.counts.sorted_bins[int(sort.bin)] += 1
        else:
            self.counts.sorts_refused += 1
        return EkiAck(seq=sort.seq, res=result.res)

    @staticmethod
    def _remember(memory: OrderedDict[K, V], key: K, value: V) -> None:
        memory[key] = value
        while len(memory) > REMEMBERED:
            memory.popitem(last=False)


__all__ = ["KrcCounts", "KrcRobot", "SimKrc", "garbage_documents"]
