"""The cell's robot link over real ZeroMQ sockets, with the test playing the bridge."""

from __future__ import annotations

import asyncio
import json

import pytest
import zmq
import zmq.asyncio

from cellctl.config import RobotLink as LinkSettings
from cellctl.drivers import DriverTimeout
from cellctl.messages import Ack, Bin, Outcome, PartRequest, Verdict, encode
from cellctl.robot_link import RobotLink


@pytest.fixture
async def bridge(tmp_path):
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path / 'bridge.sock'}"
    sock.bind(endpoint)
    yield endpoint, sock
    sock.close(linger=0)
    ctx.term()


@pytest.fixture
async def link(bridge):
    endpoint, _ = bridge
    link = RobotLink(
        LinkSettings(endpoint=endpoint, ack_timeout_s=0.2, delivery_deadline_s=1.0, heartbeat_s=5), "cell-t"
    )
    await link.connect()
    yield link
    await link.close()


async def _recv_type(sock, wanted: str) -> tuple[bytes, dict]:
    while True:
        identity, raw = await asyncio.wait_for(sock.recv_multipart(), 5)
        message = json.loads(raw)
        if message["type"] == wanted:
            return identity, message


def _verdict(seq: int) -> Verdict:
    return Verdict(
        cell_id="cell-t",
        seq=seq,
        part_id=f"P{seq}",
        profile="m8x40-hex",
        verdict=Outcome.PASS,
        bin=Bin.GOOD,
        reason="all views clean",
        max_score=0.1,
        latency_ms=12.0,
    )


async def test_part_request_is_answered_by_the_bridge(bridge, link):
    _, sock = bridge
    waiting = asyncio.create_task(link.request_part(None, 5))
    identity, ready = await _recv_type(sock, "ready")
    assert identity == b"cell-t" and ready["cell_id"] == "cell-t"
    await sock.send_multipart([identity, encode(PartRequest(part_id="A17-0042", profile="m12x80-hex"))])
    part = await waiting
    assert (part.part_id, part.profile) == ("A17-0042", "m12x80-hex")


async def test_verdict_is_resent_until_acknowledged(bridge, link):
    _, sock = bridge
    delivering = asyncio.create_task(link.deliver(_verdict(7)))
    identity, first = await _recv_type(sock, "verdict")  # lost: not acknowledged
    _, second = await _recv_type(sock, "verdict")
    assert first == second and first["seq"] == 7
    await sock.send_multipart([identity, encode(Ack(cell_id="cell-t", seq=7, bin=Bin.GOOD))])
    ack = await delivering
    assert ack.seq == 7


async def test_verdict_never_acknowledged_fails_after_the_deadline(bridge, link):
    _, _sock = bridge
    with pytest.raises(DriverTimeout, match="seq 3 not acknowledged"):
        await link.deliver(_verdict(3))


async def test_malformed_messages_are_dropped_and_the_link_keeps_serving(bridge, link):
    _, sock = bridge
    waiting = asyncio.create_task(link.request_part(None, 5))
    identity, _ = await _recv_type(sock, "ready")
    for junk in (b"{not json", b'{"type": "part"}', b'{"type": "launch_missiles"}', b"\xff\xfe"):
        await sock.send_multipart([identity, junk])
    await sock.send_multipart([identity, encode(PartRequest(part_id="P1"))])
    part = await waiting
    assert part.part_id == "P1" and part.profile is None
    assert link.dropped == 4


async def test_ready_names_the_last_accepted_part_and_a_part_sent_before_it_is_dropped(bridge, link):
    _, sock = bridge
    early = asyncio.create_task(link.request_part("X-1", 5))
    identity, ready = await _recv_type(sock, "ready")
    assert ready["accepted"] == "X-1"
    await sock.send_multipart([identity, encode(PartRequest(part_id="X-2"))])
    assert (await early).part_id == "X-2"
    # an answer no ready asked for (a second one to the same ready, or one meant for a killed
    # predecessor) is queued before the next request: dropped, never inspected
    await sock.send_multipart([identity, encode(PartRequest(part_id="STALE"))])
    async with asyncio.timeout(5):
        while link._parts.empty():  # read by the link's reader task: wait until it is queued
            await asyncio.sleep(0.01)
    waiting = asyncio.create_task(link.request_part("X-2", 5))
    _, ready = await _recv_type(sock, "ready")
    assert ready["accepted"] == "X-2"
    await sock.send_multipart([identity, encode(PartRequest(part_id="X-3"))])
    assert (await waiting).part_id == "X-3"
    assert link.dropped == 1
