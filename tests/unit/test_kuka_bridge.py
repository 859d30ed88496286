"""The KUKA client against the simulated KRC over real loopback TCP, with a robot in the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from cellctl.bridge.eki import EkiRobotBeat, EkiSort, encode
from cellctl.bridge.kuka import UNSENDABLE_RES, KukaRobot, RobotTimeout, RobotUnreachable
from cellctl.bridge.robot import Placed, SortResult
from cellctl.link.aio import cancel_and_wait
from cellctl.link.protocol import Ready, Verdict
from cellctl.outcome import Bin, Outcome
from cellctl.sim.krc import SimKrc, garbage_documents

WAIT_S = 30.0  # generous: conditions are polled, never raced against the clock
BEAT_S = 0.2


class FakeRobot:
    """Counts what it is asked; ``offer_gate``/``sort_gate`` hold it mid-action when cleared."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, Ready]] = []
        self.sorts: list[tuple[str, Verdict]] = []
        self.sorting = 0  # sorts in progress right now
        self.offer_gate = asyncio.Event()
        self.sort_gate = asyncio.Event()
        self.offer_gate.set()
        self.sort_gate.set()
        self.res = 0

    async def offer(self, cell_id: str, ready: Ready) -> Placed | None:
        self.offers.append((cell_id, ready))
        await self.offer_gate.wait()
        return Placed(part_id=f"P{len(self.offers)}", profile="m8x40-hex")

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult:
        self.sorts.append((cell_id, verdict))
        self.sorting += 1
        try:
            await self.sort_gate.wait()
        finally:
            self.sorting -= 1
        return SortResult(res=self.res)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def ready(request_id: str, accepted: str | None = None, cell_id: str = "c1") -> Ready:
    return Ready(cell_id=cell_id, boot_id="b1", request_id=request_id, accepted=accepted)


def verdict(seq: int, part_id: str = "P1", cell_id: str = "c1", bin: Bin = Bin.REJECT) -> Verdict:
    outcome = {Bin.GOOD: Outcome.PASS, Bin.REJECT: Outcome.REJECT, Bin.RECHECK: Outcome.RECHECK}[bin]
    return Verdict(
        cell_id=cell_id,
        boot_id="b1",
        seq=seq,
        request_id="r1",
        part_id=part_id,
        profile="m8x40-hex",
        verdict=outcome,
        bin=bin,
        reason="defect in head@90",
        max_score=0.9,
        latency_ms=12.0,
    )


class Rig:
    def __init__(self, buffer_limit: int = 16, reply_timeout_s: float = WAIT_S) -> None:
        self.robot = FakeRobot()
        self.krc = SimKrc(self.robot, "127.0.0.1", 0, buffer_limit, heartbeat_s=BEAT_S)
        self.buffer_limit = buffer_limit
        self.reply_timeout_s = reply_timeout_s
        self.kuka: KukaRobot | None = None

    async def start(self) -> KukaRobot:
        await self.krc.start()
        self.kuka = KukaRobot(
            "127.0.0.1",
            self.krc.port,
            buffer_limit=self.buffer_limit,
            reply_timeout_s=self.reply_timeout_s,
            heartbeat_s=BEAT_S,
            reconnect_max_s=0.5,
        )
        await self.kuka.start()
        return self.kuka

    async def close(self) -> None:
        if self.kuka is not None:
            await self.kuka.close()
        await self.krc.close()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.start()
    yield rig
    await rig.close()


async def test_offer_and_sort_round_trip(rig: Rig) -> None:
    assert rig.kuka is not None
    placed = await rig.kuka.offer("c1", ready("r1"))
    assert placed == Placed(part_id="P1", profile="m8x40-hex")
    assert rig.robot.offers[0][1].request_id == "r1" and rig.robot.offers[0][1].accepted is None

    result = await rig.kuka.sort("c1", verdict(42, part_id="P1", bin=Bin.RECHECK))
    assert result == SortResult(res=0)
    cell, seen = rig.robot.sorts[0]
    assert (cell, seen.seq, seen.bin, seen.verdict, seen.part_id, seen.boot_id) == (
        "c1",
        42,
        Bin.RECHECK,
        Outcome.RECHECK,
        "P1",
        "b1",
    )
    assert seen.profile == "m8x40-hex"  # the KRC remembers the profile it announced the part with
    assert rig.krc.health()["sorted_bins"] == {3: 1}
    assert rig.kuka.health()["malformed"] == 0 and rig.krc.counts.garbage_received == 0


async def test_a_refusing_ack_is_returned_not_raised(rig: Rig) -> None:
    assert rig.kuka is not None
    rig.robot.res = 3
    result = await rig.kuka.sort("c1", verdict(5))
    assert result.res == 3 and result.detail
    assert rig.krc.counts.sorts_refused == 1 and not rig.krc.counts.sorted_bins


async def test_a_disconnect_mid_sort_raises_and_the_resent_sort_acts_once(rig: Rig) -> None:
    kuka = rig.kuka
    assert kuka is not None
    await kuka.offer("c1", ready("r1"))
    rig.robot.sort_gate.clear()
    first = asyncio.create_task(kuka.sort("c1", verdict(7)))
    await eventually(lambda: rig.robot.sorting == 1, "the robot is sorting")

    assert rig.krc.disconnect()
    with pytest.raises(RobotUnreachable):
        await first
    rig.robot.sort_gate.set()  # the robot finishes the move; its Ack is lost with the connection
    await eventually(lambda: rig.krc.counts.connections == 2 and bool(kuka.health()["connected"]), "reconnected")

    assert await kuka.sort("c1", verdict(7)) == SortResult(res=0)
    assert len(rig.robot.sorts) == 1  # acted once
    assert rig.krc.counts.duplicate_sorts == 1
    assert rig.krc.health()["sorted_bins"] == {2: 1}
    assert kuka.health()["disconnects"] == 1


async def test_an_offer_survives_a_disconnect_and_the_robot_places_one_part(rig: Rig) -> None:
    kuka = rig.kuka
    assert kuka is not None
    rig.robot.offer_gate.clear()
    offer = asyncio.create_task(kuka.offer("c1", ready("r9", accepted="P0")))
    await eventually(lambda: len(rig.robot.offers) == 1, "the robot is placing a part")

    assert rig.krc.disconnect()
    await eventually(lambda: rig.krc.counts.connections == 2, "reconnected")
    rig.robot.offer_gate.set()
    placed = await offer
    assert placed == Placed(part_id="P1", profile="m8x40-hex")
    assert len(rig.robot.offers) == 1  # the Ready sent again was answered with the same part
    await eventually(lambda: rig.krc.counts.repeated_readies == 1, "the Ready came again")


async def test_garbage_from_the_krc_is_counted_and_the_link_keeps_working(rig: Rig) -> None:
    kuka = rig.kuka
    assert kuka is not None
    await eventually(lambda: rig.krc.connected, "connected")
    n = 2 * len(garbage_documents())
    assert rig.krc.garbage(n) == n
    await eventually(lambda: kuka.health()["malformed"] == n, "every garbage document counted")

    assert await kuka.offer("c1", ready("r1")) is not None
    assert await kuka.sort("c1", verdict(1)) == SortResult(res=0)
    health = kuka.health()
    assert health["connects"] == 1 and health["disconnects"] == 0  # never dropped for it
    assert health["malformed"] == n and health["unmatched"] == 0


async def test_never_more_than_the_buffer_limit_outstanding() -> None:
    rig = Rig(buffer_limit=3)
    kuka = await rig.start()
    try:
        rig.robot.sort_gate.clear()  # a slow robot: nothing is acknowledged for now
        sorts = [asyncio.create_task(kuka.sort("c1", verdict(seq, part_id=f"P{seq}"))) for seq in range(1, 11)]
        await eventually(lambda: rig.krc.counts.max_unanswered == 3, "the robot's buffer is full")
        await eventually(lambda: kuka.health()["room_waits"] == 7, "the rest wait for room")
        assert kuka.health()["outstanding"] == 3

        rig.robot.sort_gate.set()
        assert await asyncio.gather(*sorts) == [SortResult(res=0)] * 10
        assert [v.seq for _, v in rig.robot.sorts] == list(range(1, 11))
        assert rig.krc.counts.dropped == 0
        assert rig.krc.counts.max_unanswered == 3
        assert kuka.health()["max_outstanding"] == 3
    finally:
        await rig.close()


async def test_the_krc_drops_what_exceeds_its_buffer() -> None:
    """The bound the client respects is real: a client that ignores it loses messages."""
    robot = FakeRobot()
    robot.sort_gate.clear()
    krc = SimKrc(robot, "127.0.0.1", 0, 2, heartbeat_s=BEAT_S)
    await krc.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", krc.port)
        for seq in range(1, 6):
            writer.write(encode(EkiSort(seq=seq, bin=Bin.GOOD, part_id="P", cell_id="c1", boot_id="b1")))
        writer.write(b"<Cell><Nonsense/></Cell>")
        await writer.drain()
        await eventually(lambda: krc.counts.dropped == 3 and krc.counts.garbage_received == 1, "dropped, garbage")
        assert krc.counts.max_unanswered == 2
        writer.close()
        await writer.wait_closed()
    finally:
        robot.sort_gate.set()
        await krc.close()


async def test_sorts_of_two_cells_with_the_same_seq_are_never_outstanding_together(rig: Rig) -> None:
    kuka = rig.kuka
    assert kuka is not None
    rig.robot.sort_gate.clear()
    first = asyncio.create_task(kuka.sort("c1", verdict(5, cell_id="c1")))
    await eventually(lambda: rig.robot.sorting == 1, "the first is being sorted")
    second = asyncio.create_task(kuka.sort("c2", verdict(5, cell_id="c2")))
    await eventually(lambda: kuka.health()["seq_waits"] == 1, "the second waits for the first's Ack")
    assert rig.krc.counts.max_unanswered == 1

    rig.robot.sort_gate.set()
    assert await first == SortResult(res=0) and await second == SortResult(res=0)
    assert [c for c, _ in rig.robot.sorts] == ["c1", "c2"]


async def test_a_sort_without_an_ack_times_out_and_the_late_ack_frees_its_place() -> None:
    rig = Rig(reply_timeout_s=0.3)
    kuka = await rig.start()
    try:
        await eventually(lambda: bool(kuka.health()["connected"]), "connected")
        rig.robot.sort_gate.clear()  # held until released: the timeout is certain
        with pytest.raises(RobotTimeout):
            await kuka.sort("c1", verdict(9))
        health = kuka.health()
        assert health["timeouts"] == 1 and health["outstanding"] == 1  # the robot may still hold it
        rig.robot.sort_gate.set()
        await eventually(lambda: kuka.health()["outstanding"] == 0, "the late Ack arrived")
        assert kuka.health()["unmatched"] == 0 and len(rig.robot.sorts) == 1
    finally:
        await rig.close()


async def test_an_unreachable_robot_fails_sorts_and_is_retried() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on port now
    kuka = KukaRobot("127.0.0.1", port, reply_timeout_s=0.3, reconnect_max_s=0.2)
    await kuka.start()
    try:
        with pytest.raises(RobotUnreachable):
            await kuka.sort("c1", verdict(1))
        await eventually(lambda: int(str(kuka.health()["connect_failures"])) >= 2, "retried")
        assert kuka.health()["connected"] is False
    finally:
        await kuka.close()


async def test_a_silent_robot_is_disconnected_and_reconnected() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accepts, reads nothing, says nothing

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    kuka = KukaRobot("127.0.0.1", server.sockets[0].getsockname()[1], heartbeat_s=0.1, reconnect_max_s=0.2)
    await kuka.start()
    try:
        await eventually(lambda: len(connections) >= 2, "reconnected after the silence")
        assert int(str(kuka.health()["silences"])) >= 1
    finally:
        await kuka.close()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_close_fails_a_waiting_offer_and_leaves_no_task(rig: Rig) -> None:
    kuka = rig.kuka
    assert kuka is not None
    rig.robot.offer_gate.clear()
    offer = asyncio.create_task(kuka.offer("c1", ready("r1")))
    await eventually(lambda: len(rig.robot.offers) == 1, "offered")
    await kuka.close()
    with pytest.raises(RobotUnreachable):
        await offer
    rig.robot.offer_gate.set()


async def test_a_verdict_that_cannot_be_written_as_xml_is_refused_not_retried(rig: Rig) -> None:
    assert rig.kuka is not None
    result = await rig.kuka.sort("c1", verdict(3, part_id="P\uffff"))  # a SafeName, not an XML character
    assert result.res == UNSENDABLE_RES and not rig.robot.sorts


class TalkingRobot:
    """A robot on real loopback TCP that, per connection, sends ``first`` once and then
    ``then`` every ``every_s`` until the connection ends; reads and discards what it gets."""

    def __init__(self, first: bytes, then: bytes, every_s: float) -> None:
        self.first, self.then, self.every_s = first, then, every_s
        self.connections = 0
        self.heard_beat = asyncio.Event()  # the PC's first <Cell><Beat/></Cell> of a connection
        self.writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._talk, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self.writers.append(writer)
        listening = asyncio.create_task(self._listen(reader))
        try:
            writer.write(self.first)
            while not writer.is_closing():
                await writer.drain()
                await asyncio.sleep(self.every_s)
                writer.write(self.then)
        except (ConnectionError, OSError):
            pass  # the PC dropped us
        finally:
            await cancel_and_wait(listening)
            writer.transport.abort()
            self._handlers.discard(task)

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        received = b""
        while data := await reader.read(65_536):
            received = (received + data)[-64:]
            if b"<Cell><Beat/></Cell>" in received:
                self.heard_beat.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


BEAT = encode(EkiRobotBeat())
GARBAGE = b"<Robot><Teleport/></Robot>"  # well-formed XML, no EKI message


async def test_a_robot_that_sends_only_garbage_counts_as_silent_and_is_reconnected() -> None:
    # garbage every 10 ms, the silence limit 0.3 s: only valid messages may restart the timer
    babbler = TalkingRobot(GARBAGE, GARBAGE, every_s=0.01)
    kuka = KukaRobot("127.0.0.1", await babbler.start(), heartbeat_s=0.1, reconnect_max_s=0.2)
    await kuka.start()
    try:
        await eventually(lambda: babbler.connections >= 2, "reconnected after the garbage-only silence")
        health = kuka.health()
        assert int(str(health["silences"])) >= 1 and int(str(health["malformed"])) >= 1
    finally:
        await kuka.close()
        await babbler.close()


async def test_malformed_input_is_counted_in_full_and_logged_rate_limited() -> None:
    n = 1_500
    robot = TalkingRobot(BEAT + GARBAGE * n + BEAT, BEAT, every_s=BEAT_S)  # alive throughout
    kuka = KukaRobot("127.0.0.1", await robot.start(), heartbeat_s=BEAT_S, reconnect_max_s=0.5)
    with capture_logs() as logs:
        await kuka.start()
        try:
            await eventually(lambda: kuka.health()["malformed"] == n, "every garbage document counted")
            health = kuka.health()
        finally:
            await kuka.close()
            await robot.close()
    malformed = [e for e in logs if e["event"] == "kuka.malformed"]
    assert [e["total"] for e in malformed] == [*range(1, 11), 1000]  # the first ten, then every 1000th
    assert {e["log_level"] for e in malformed} == {"warning"}
    assert health["malformed_by_reason"] == {"unknown": n}
    assert (health["connects"], health["disconnects"], health["silences"]) == (1, 0, 0)


async def test_close_is_never_lost_when_the_robot_drops_the_connection_just_before() -> None:
    """close() lands while the client is cleaning up a connection the robot just dropped: the
    cancellation must end the client (a swallowed one left the bridge deaf to SIGTERM)."""
    for turns in range(40):  # close() that many event-loop turns after the drop: every phase of the cleanup
        robot = TalkingRobot(BEAT, BEAT, every_s=BEAT_S)
        kuka = KukaRobot("127.0.0.1", await robot.start(), heartbeat_s=BEAT_S, reconnect_max_s=0.5)
        await kuka.start()
        try:
            await asyncio.wait_for(robot.heard_beat.wait(), WAIT_S)
            robot.writers[0].transport.abort()  # the robot drops the connection
            for _ in range(turns):
                await asyncio.sleep(0)
            try:
                await asyncio.wait_for(kuka.close(), WAIT_S)
            except TimeoutError:
                pytest.fail(f"close() {turns} loop turns after the robot dropped TCP never returned")
        finally:
            await kuka.close()
            await robot.close()


async def test_cancel_and_wait_swallows_the_childs_cancellation_not_the_callers() -> None:
    cleaning = asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.Event().wait()  # cleans up until cancelled again
            raise

    async def caller(kid: asyncio.Task[None]) -> str:
        await cancel_and_wait(kid)
        return "ran on"

    kid = asyncio.create_task(child())
    assert await caller(asyncio.create_task(asyncio.sleep(10))) == "ran on"  # only the child was cancelled
    outer = asyncio.create_task(caller(kid))
    await asyncio.wait_for(cleaning.wait(), WAIT_S)  # the caller now waits for the child's end
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled() and kid.cancelled()
