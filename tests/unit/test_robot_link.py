"""The cell's end of the robot link over real ZeroMQ sockets with CURVE; the test plays the bridge
(a ROUTER, CURVE server) by hand. Every wait is for an event or a condition, with a generous
timeout; no test measures how long something took."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog
import zmq
import zmq.asyncio

from cellctl.config import RobotLinkSettings
from cellctl.drivers import DriverInitError
from cellctl.link.client import LinkReset, RobotLink
from cellctl.link.keys import KeyFileError, LinkKeys
from cellctl.link.protocol import (
    MAX_FRAME_BYTES,
    MAXMSGSIZE,
    Ack,
    Heartbeat,
    Message,
    Part,
    Ready,
    Refusal,
    Refused,
    Verdict,
    encode,
)
from cellctl.outcome import Bin, Outcome
from cellctl.state import CellState

CELL = "cell-t"
WAIT_S = 10.0  # generous: the condition normally holds within milliseconds


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait until ``condition()`` holds (checked every few ms); fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


class Bridge:
    """A ROUTER the test drives: what a bridge (or a rogue) sends and receives, by hand.

    Plain, the cell's socket identity is its cell id. With CURVE the cell sets none (the bridge
    knows it by its key) and libzmq assigns a routing id per connection: like the real bridge,
    this one sends to the routing id of the latest message it received."""

    def __init__(self, endpoint: str, secret: bytes | None, *, rcvhwm: int = 10_000) -> None:
        self.endpoint = endpoint
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.SNDHWM, 10_000)  # the test never drops what it means to send
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if secret is not None:
            self.sock.curve_server = True
            self.sock.curve_secretkey = secret
        self.sock.bind(endpoint)
        self.curve = secret is not None
        self.identity = CELL.encode()  # with CURVE: learnt from what the cell sends

    async def recv(self, kind: str | None = None) -> dict[str, Any]:
        """The next message from the cell (of ``kind``; heartbeats skipped unless asked for)."""
        while True:
            identity, *frames = await asyncio.wait_for(self.sock.recv_multipart(), WAIT_S)
            if self.curve:
                assert identity != CELL.encode()  # never chosen by the cell: libzmq's, per connection
                self.identity = identity
            else:
                assert identity == CELL.encode()
            assert len(frames) == 1
            message: dict[str, Any] = json.loads(frames[0])
            if kind == message["type"] or (kind is None and message["type"] != "heartbeat"):
                return message

    async def send(self, message: Message | bytes | list[bytes]) -> None:
        frames = [encode(message)] if isinstance(message, Message) else message
        frames = [frames] if isinstance(frames, bytes) else frames
        await self.sock.send_multipart([self.identity, *frames])

    async def beat(self, boot_id: str = "bridge-boot-1") -> None:
        await self.send(Heartbeat(sender="bridge", boot_id=boot_id))

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def curve() -> dict[str, bytes]:
    bridge_public, bridge_secret = zmq.curve_keypair()
    cell_public, cell_secret = zmq.curve_keypair()
    return {
        "bridge_public": bridge_public,
        "bridge_secret": bridge_secret,
        "public": cell_public,
        "secret": cell_secret,
    }


@pytest.fixture
def endpoint(tmp_path) -> str:
    return f"ipc://{tmp_path / 'bridge.sock'}"


def _link(endpoint: str, curve: dict[str, bytes] | None, **settings: Any) -> RobotLink:
    fields: dict[str, Any] = {"endpoint": endpoint, "heartbeat_s": 10.0, "missed_beats": 3, **settings}
    if curve is None:
        fields["security"] = "none"
        keys = None
    else:
        fields["bridge_public_key"] = curve["bridge_public"].decode()
        keys = LinkKeys(curve["public"], curve["secret"], curve["bridge_public"], "test")
    link = RobotLink(RobotLinkSettings(**fields), CELL, "cell-boot-1", CellState(), keys)
    link.acks = []  # type: ignore[attr-defined]
    link.ups = 0  # type: ignore[attr-defined]

    def up() -> None:
        link.ups += 1  # type: ignore[attr-defined]

    link.on_ack = link.acks.append  # type: ignore[attr-defined]
    link.on_up = up
    return link


@pytest.fixture
async def bridge(endpoint, curve):
    bridge = Bridge(endpoint, curve["bridge_secret"])
    yield bridge
    bridge.close()


@pytest.fixture
async def link(endpoint, curve, bridge):
    """A link that is up: the bridge heard the cell's greeting and answered with a heartbeat."""
    link = _link(endpoint, curve)
    await link.connect()
    await bridge.recv("heartbeat")  # sent as soon as the CURVE handshake completed
    await bridge.beat()
    await until(lambda: link.up, "link up")
    yield link
    await link.close()


async def _open(link: RobotLink, bridge: Bridge, accepted: str | None = None) -> tuple[asyncio.Task[Part], str]:
    """A part request in flight, and its request id as the bridge received it."""
    task = asyncio.create_task(link.request_part(accepted))
    ready = await bridge.recv("ready")
    return task, ready["request_id"]


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _part(request_id: str, part_id: str = "A17-0042", profile: str | None = "m12x80-hex") -> Part:
    return Part(request_id=request_id, part_id=part_id, profile=profile)


# ---------------------------------------------------------------------- one part per request


async def test_the_part_answering_the_open_request_is_returned(bridge, link):
    assert link.state.blocked_reasons == {} and link.ups == 1 and link.bridge_boot_id == "bridge-boot-1"
    task = asyncio.create_task(link.request_part("A17-0041"))
    ready = await bridge.recv("ready")
    assert Ready.model_validate(ready).accepted == "A17-0041"
    assert (ready["cell_id"], ready["boot_id"], ready["v"]) == (CELL, "cell-boot-1", 2)
    await bridge.send(_part(ready["request_id"]))
    part = await asyncio.wait_for(task, WAIT_S)
    assert (part.part_id, part.profile, part.request_id) == ("A17-0042", "m12x80-hex", ready["request_id"])


async def test_every_request_has_a_fresh_id_and_a_second_answer_is_refused(bridge, link):
    task, first = await _open(link, bridge)
    await bridge.send(_part(first, "P1"))
    assert (await task).part_id == "P1"
    await bridge.send(_part(first, "P2"))  # a duplicated part message
    refused = await bridge.recv("refused")
    assert (refused["reason"], refused["request_id"], refused["part_id"]) == ("already_answered", first, "P2")
    task, second = await _open(link, bridge)
    assert second != first
    await bridge.send(_part(first, "P3"))  # still the old answer, now while another is open
    assert (await bridge.recv("refused"))["reason"] == "already_answered"
    await bridge.send(_part(second, "P4"))
    assert (await task).part_id == "P4"
    assert link.health()["refused"] == {"already_answered": 2}


async def test_a_part_with_no_request_open_or_a_stale_id_is_refused_and_never_returned(bridge, link):
    await bridge.send(_part("r-unsolicited", "U1"))
    refused = await bridge.recv("refused")
    assert (refused["reason"], refused["part_id"]) == ("no_open_request", "U1")
    task, request_id = await _open(link, bridge)
    await bridge.send(_part("r-unknown", "S1"))
    assert (await bridge.recv("refused"))["reason"] == "stale_request"
    assert not task.done()  # the open request still waits for its own answer
    await bridge.send(_part(request_id, "P1"))
    assert (await task).part_id == "P1"
    assert link.refused == {"no_open_request": 1, "stale_request": 1}


async def test_a_request_given_up_by_its_caller_is_stale_for_good(bridge, link):
    task, abandoned = await _open(link, bridge)
    await _cancel(task)
    await bridge.send(_part(abandoned, "LATE"))
    assert (await bridge.recv("refused"))["reason"] == "stale_request"


def _oversized() -> bytes:
    text = json.dumps({"v": 2, "type": "part", "request_id": "r", "part_id": "P", "profile": "x" * MAX_FRAME_BYTES})
    return text.encode()


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([encode(_part("r1")), encode(_part("r1"))], Refusal.EXTRA_FRAMES),
        ([b"{}", b""], Refusal.EXTRA_FRAMES),
        ([_oversized()], Refusal.OVERSIZED),
        ([b'{"v": 1, "type": "part", "request_id": "r1", "part_id": "P1"}'], Refusal.WRONG_VERSION),
        ([b'{"v": 2, "type": "ack", "cell_id": "cell-t", "boot_id": "b", "seq": "42", "bin": 1}'], Refusal.MALFORMED),
        ([encode(Ready(cell_id="x", boot_id="b", request_id="r"))], Refusal.WRONG_DIRECTION),
        ([b"not json at all \x00\xff\x1b[31m"], Refusal.MALFORMED),
        ([b'{"v": 2, "type": "part", "request_id": "r1", "part_id": "P\\u202e1"}'], Refusal.MALFORMED),
    ],
    ids=["two-parts", "two-frames", "oversized", "version-1", "seq-as-string", "ready-to-cell", "garbage", "bidi"],
)
async def test_frames_that_are_no_message_for_the_cell_are_refused_and_logged_short(bridge, link, frames, reason):
    task, request_id = await _open(link, bridge)
    with structlog.testing.capture_logs() as logs:
        await bridge.send(frames)
        refused = await bridge.recv("refused")
    assert refused["reason"] == reason.value and refused["request_id"] is None
    assert not task.done()  # nothing of it reached the open request
    (event,) = [e for e in logs if e["event"] == "robot_link.refused"]
    assert event["reason"] == reason.value and event["size"] == sum(map(len, frames))
    assert event["frames"] == len(frames) and len(event["preview"]) <= 80 and event["preview"].isprintable()
    await bridge.send(_part(request_id, "P1"))
    assert (await task).part_id == "P1"
    assert link.refused == {reason.value: 1}


async def test_a_flood_of_parts_is_refused_without_queueing_and_the_right_answer_still_counts(endpoint, curve):
    bridge = Bridge(endpoint, curve["bridge_secret"], rcvhwm=10)  # a bridge slow to read refusals
    link = _link(endpoint, curve)
    try:
        await link.connect()
        await bridge.recv("heartbeat")
        await bridge.beat()
        await until(lambda: link.up, "link up")
        task, request_id = await _open(link, bridge)
        flood = 5_000
        with structlog.testing.capture_logs():  # 5,000 warnings, one per refused message
            for n in range(flood):
                await bridge.send(_part(f"stale-{n}", f"F{n}"))
            await bridge.send(_part(request_id, "REAL"))
            part = await asyncio.wait_for(task, 60)
        assert part.part_id == "REAL" and link.refused == {"stale_request": flood}
        # every refusal either reached the bridge or was dropped and counted: none waits anywhere
        received = 0

        def settled() -> bool:
            nonlocal received
            while bridge.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                _, raw = bridge.sock.recv_multipart(zmq.NOBLOCK).result()
                received += json.loads(raw)["type"] == "refused"
            return received + link.dropped["refused"] == flood

        await until(settled, "every refusal received or counted as dropped", 60)
        assert link.health()["dropped_sends"] == sum(link.dropped.values()) >= link.dropped["refused"]
    finally:
        await link.close()
        bridge.close()


async def test_acks_go_to_the_outbox_callback_and_refusals_of_the_bridge_are_counted(bridge, link):
    ack = Ack(cell_id=CELL, boot_id="cell-boot-1", seq=7, bin=Bin.REJECT, res=0)
    await bridge.send(ack)
    await bridge.send(Refused(reason=Refusal.WRONG_CELL, detail="not yours"))
    await until(lambda: link.acks == [ack], "ack handed on")
    await until(lambda: link.refused_by_bridge == {"wrong_cell": 1}, "bridge refusal counted")


async def test_a_verdict_is_queued_without_waiting(bridge, link):
    verdict = Verdict(
        cell_id=CELL,
        boot_id="cell-boot-1",
        seq=42,
        request_id="r1",
        part_id="P42",
        profile="m8x40-hex",
        verdict=Outcome.REJECT,
        bin=Bin.REJECT,
        reason="defect in head@90",
        max_score=0.98,
        latency_ms=200.0,
    )
    assert link.send_verdict(verdict) is True
    received = await bridge.recv("verdict")
    assert received == json.loads(encode(verdict))


async def test_nothing_is_queued_toward_an_endpoint_with_no_bridge(endpoint, curve):
    link = _link(endpoint, curve)
    await link.connect()
    try:
        verdict = Verdict(
            cell_id=CELL,
            boot_id="b",
            seq=1,
            request_id=None,
            part_id="P1",
            profile="m8x40-hex",
            verdict=Outcome.PASS,
            bin=Bin.GOOD,
            reason="all views clean",
            max_score=0.1,
            latency_ms=1.0,
        )
        assert link.send_verdict(verdict) is False
        assert not link.up and "link" in link.state.blocked_reasons
        with pytest.raises(LinkReset):
            await link.request_part(None)
    finally:
        await link.close()


# ---------------------------------------------------------------------- liveness


async def test_a_bridge_restart_resets_the_open_request_and_calls_on_up(bridge, link):
    task, old = await _open(link, bridge)
    await bridge.beat("bridge-boot-2")
    with pytest.raises(LinkReset, match="bridge restarted"):
        await asyncio.wait_for(task, WAIT_S)
    assert link.ups == 2 and link.bridge_boot_id == "bridge-boot-2" and link.state.blocked_reasons == {}
    task, new = await _open(link, bridge)
    assert new != old
    await bridge.send(_part(old, "OLD"))  # the old bridge's answer, delivered late
    assert (await bridge.recv("refused"))["reason"] == "stale_request"
    await bridge.send(_part(new, "NEW"))
    assert (await task).part_id == "NEW"


async def test_silence_takes_the_link_down_and_the_next_message_brings_it_up(endpoint, curve, bridge):
    link = _link(endpoint, curve, heartbeat_s=1.0, missed_beats=2)  # down after 2 s of silence
    came_up = asyncio.Event()
    counted = link.on_up
    link.on_up = lambda: (counted(), came_up.set())  # type: ignore[func-returns-value]
    await link.connect()
    try:
        assert link.state.blocked_reasons == {"link": "robot link: waiting for the bridge"}
        await bridge.recv("heartbeat")
        await bridge.beat()
        await asyncio.wait_for(came_up.wait(), WAIT_S)
        task, old = await _open(link, bridge)
        with pytest.raises(LinkReset):  # the bridge says nothing more
            await asyncio.wait_for(task, WAIT_S)
        assert not link.up and link.state.blocked_reasons["link"].startswith("robot link down: no message")
        with pytest.raises(LinkReset):  # no part is asked for while down
            await link.request_part(None)
        came_up.clear()
        await bridge.beat()
        await asyncio.wait_for(came_up.wait(), WAIT_S)
        task, new = await _open(link, bridge)  # at once: the window of 2 s has just begun
        assert new != old and "link" not in link.state.blocked_reasons and link.ups == 2
        await _cancel(task)
        health = link.health()
        assert health["down_s_total"] > 0 and health["refused"] == {}
    finally:
        await link.close()


async def test_a_frame_over_maxmsgsize_ends_the_session_and_the_link_connects_again(bridge, link):
    """libzmq ends the session of a peer that sent more than MAXMSGSIZE with a disconnect and,
    after that protocol error, never reconnects by itself: the link does."""
    before = bridge.identity
    with structlog.testing.capture_logs() as logs:
        await bridge.send([b"x" * (MAXMSGSIZE + 1)])
        while bridge.identity == before:  # with CURVE, a new connection has a new routing id
            await bridge.recv("heartbeat")  # the greeting after the new handshake
    assert [e["log_level"] for e in logs if e["event"] == "robot_link.reconnecting"] == ["warning"]
    await bridge.beat()
    await until(lambda: link.up, "link up")
    task, request_id = await _open(link, bridge)
    await bridge.send(_part(request_id, "P1"))
    assert (await task).part_id == "P1"
    assert link.refused == {}  # the oversized frame never reached the decoder


# ---------------------------------------------------------------------- authentication


@pytest.mark.parametrize("rogue_secret", ["other-key", "no-curve"])
async def test_a_rogue_on_the_endpoint_fails_the_handshake_and_is_never_talked_to(endpoint, curve, rogue_secret):
    rogue = Bridge(endpoint, zmq.curve_keypair()[1] if rogue_secret == "other-key" else None)
    link = _link(endpoint, curve)
    try:
        with structlog.testing.capture_logs() as logs:
            await link.connect()
            await until(lambda: link.health()["handshake_failures"] >= 1, "handshake failure counted")
        failed = [e for e in logs if e["event"] == "robot_link.handshake_failed"]
        assert failed and failed[0]["log_level"] == "error"
        assert failed[0]["pinned_key"] == "robot.bridge_public_key"
        assert failed[0]["bridge_public_key"] == curve["bridge_public"].decode()
        assert not link.up and "link" in link.state.blocked_reasons
        assert await rogue.sock.poll(0) == 0  # not even the greeting reached it
        with pytest.raises(LinkReset):
            await link.request_part(None)
    finally:
        await link.close()
        rogue.close()


async def test_curve_without_keys_refuses_to_connect(endpoint):
    settings = RobotLinkSettings(endpoint=endpoint)
    link = RobotLink(settings, CELL, "b", CellState(), None)
    with pytest.raises(KeyFileError):
        await link.connect()
    await link.close()


async def test_an_endpoint_libzmq_cannot_use_is_a_driver_init_error_and_leaves_nothing_running():
    link = RobotLink(RobotLinkSettings(endpoint="tcp://no-port", security="none"), CELL, "b", CellState(), None)
    with pytest.raises(DriverInitError, match=r"robot\.endpoint 'tcp://no-port'"):
        await link.connect()
    assert link.health()["up"] is False  # and the autouse fixture finds no task left


async def test_security_none_talks_plain_and_warns_at_every_start(endpoint):
    bridge = Bridge(endpoint, None)
    for _start in range(2):
        link = _link(endpoint, None)
        try:
            with structlog.testing.capture_logs() as logs:
                await link.connect()
            assert [e["log_level"] for e in logs if e["event"] == "robot_link.insecure"] == ["warning"]
            await bridge.recv("heartbeat")
            await bridge.beat()
            await until(lambda link=link: link.up, "link up")
            task, request_id = await _open(link, bridge)
            await bridge.send(_part(request_id, "P1"))
            assert (await task).part_id == "P1"
        finally:
            await link.close()
    bridge.close()


# ---------------------------------------------------------------------- the pipeline's side


async def _next_part(link: RobotLink, stop: asyncio.Event) -> asyncio.Task[Part | None]:
    from cellctl.config import CellConfig
    from cellctl.pipeline import Pipeline

    async def no_reload() -> None:
        return None

    # only the request loop is exercised: the parts of the line it does not touch are absent
    line = Pipeline(CellConfig(), {}, {}, None, link, None, None, link.state, None, no_reload)  # type: ignore[arg-type]
    return asyncio.create_task(line._next_part(stop))


async def test_the_pipeline_asks_again_at_once_after_a_reset_and_never_takes_the_old_answer(bridge, link):
    stop = asyncio.Event()
    waiting = await _next_part(link, stop)
    old = (await bridge.recv("ready"))["request_id"]
    await bridge.beat("bridge-boot-2")  # the bridge restarted: no block, so a new ready follows
    new = (await bridge.recv("ready"))["request_id"]
    assert new != old
    await bridge.send(_part(old, "OLD"))
    assert (await bridge.recv("refused"))["reason"] == "stale_request"
    await bridge.send(_part(new, "NEW"))
    part = await asyncio.wait_for(waiting, WAIT_S)
    assert part is not None and (part.part_id, part.request_id) == ("NEW", new)


async def test_the_pipeline_waits_while_the_link_is_down_then_offers_the_fixture_again(endpoint, curve, bridge):
    link = _link(endpoint, curve, heartbeat_s=1.0, missed_beats=2)
    await link.connect()
    stop = asyncio.Event()
    waiting: asyncio.Task[Part | None] | None = None
    try:
        await bridge.recv("heartbeat")
        waiting = await _next_part(link, stop)  # blocked: the bridge was never heard
        await bridge.beat()
        old = (await bridge.recv("ready"))["request_id"]
        # silence: the link goes down, the request is reset, the pipeline waits for the unblock
        await until(lambda: not link.up, "link down")
        assert not waiting.done()
        await bridge.beat()
        new = (await bridge.recv("ready"))["request_id"]
        assert new != old
        await bridge.send(_part(new, "P2"))
        part = await asyncio.wait_for(waiting, WAIT_S)
        assert part is not None and part.request_id == new
    finally:
        stop.set()
        if waiting is not None:
            await asyncio.gather(waiting, return_exceptions=True)
        await link.close()
