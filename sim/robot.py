"""Simulated KUKA robot bridge on real ZeroMQ sockets (ROUTER, bound; the cell connects).

It feeds parts (placing each in the world's fixture, with the configured defect rate),
acknowledges every verdict by sequence number (deduplicating resends), drops each part in
the bin the verdict names and counts where each part went against the ground truth.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import numpy as np
import structlog
import zmq
import zmq.asyncio
from pydantic import ValidationError

from cellctl.config import SimGeometry
from cellctl.messages import BRIDGE_BOUND, Ack, Heartbeat, PartRequest, Ready, Verdict, encode
from cellctl.sim.part import SimPart, sample_part
from cellctl.sim.world import SimWorld

log = structlog.get_logger("cellctl.sim.robot")

PICK_AND_PLACE_S = 1.2  # take the inspected part out, put the next one in


@dataclass(frozen=True)
class Sorted:
    part_id: str
    defective: bool
    verdict: str
    bin: int
    seq: int
    latency_ms: float


class SimRobot:
    def __init__(
        self,
        endpoint: str,
        world: SimWorld,
        geometry: SimGeometry,
        profile: str,
        parts: int,
        defect_rate: float,
        seed: int,
    ) -> None:
        self._endpoint = endpoint
        self._world = world
        self._geometry = geometry
        self._profile = profile
        self._parts = parts
        self._defect_rate = defect_rate
        self._rng = np.random.default_rng([seed, 4242])
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._feeding: set[asyncio.Task[None]] = set()
        self.fed: dict[str, SimPart] = {}
        self.sorted: dict[str, Sorted] = {}
        self.bins: Counter[int] = Counter()
        self.malformed = 0
        self.duplicates = 0
        self.done = asyncio.Event()

    async def start(self) -> None:
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted cell takes its identity over
        self._sock.bind(self._endpoint)
        self._task = asyncio.create_task(self._serve(), name="sim-robot")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._feeding) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()

    async def _serve(self) -> None:
        assert self._sock is not None
        while True:
            identity, raw = await self._sock.recv_multipart()
            try:
                message = BRIDGE_BOUND.validate_json(raw)
            except ValidationError:
                self.malformed += 1
                log.warning("robot.malformed", size=len(raw))
                continue
            if isinstance(message, Ready):
                task = asyncio.create_task(self._feed(identity))
                self._feeding.add(task)
                task.add_done_callback(self._feeding.discard)
            elif isinstance(message, Verdict):
                await self._sort(identity, message)
            elif isinstance(message, Heartbeat):
                await self._sock.send_multipart([identity, encode(Heartbeat(sender="sim-robot"))])

    async def _feed(self, identity: bytes) -> None:
        if len(self.fed) >= self._parts:
            return  # input bin empty
        part_id = f"P{len(self.fed) + 1:05d}"
        part = sample_part(self._rng, self._geometry, part_id, bool(self._rng.random() < self._defect_rate))
        self.fed[part_id] = part
        self._world.fixture = None  # the inspected part leaves the fixture
        await self._world.clock.sleep(PICK_AND_PLACE_S)
        self._world.fixture = part
        assert self._sock is not None
        await self._sock.send_multipart([identity, encode(PartRequest(part_id=part_id, profile=self._profile))])

    async def _sort(self, identity: bytes, verdict: Verdict) -> None:
        assert self._sock is not None
        previous = self.sorted.get(verdict.part_id)
        if previous is not None and previous.seq == verdict.seq:
            self.duplicates += 1  # a resend: acknowledge again, sort once
        elif verdict.part_id in self.fed:
            part = self.fed[verdict.part_id]
            self.sorted[verdict.part_id] = Sorted(
                verdict.part_id, part.defective, verdict.verdict.value, int(verdict.bin), verdict.seq,
                verdict.latency_ms,
            )
            self.bins[int(verdict.bin)] += 1
        else:
            log.warning("robot.unknown_part", part_id=verdict.part_id, seq=verdict.seq)
        ack = Ack(cell_id=verdict.cell_id, seq=verdict.seq, bin=verdict.bin)
        await self._sock.send_multipart([identity, encode(ack)])
        if len(self.sorted) >= self._parts:
            self.done.set()
