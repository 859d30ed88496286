"""Simulated KUKA robot bridge on real ZeroMQ sockets (ROUTER, bound; the cell connects).

It feeds parts (placing each in the fixture, with the configured defect rate), acknowledges
every verdict by sequence number (deduplicating resends), drops each part in the bin the
verdict names and counts where each part went against the ground truth.

One part per ``ready``, and a restarted cell is handled as the real robot must: ``ready``
names the part the cell last durably accepted; if the part still in the fixture is not that
one, the cell never took it (it died before the accept record) and the same part is announced
again; otherwise it is taken out and the next one put in. A part is counted once however many
verdicts name it.

With a fault plan (``sim/faults.py``) the robot places each part together with its planned
fault, isolates a faulted part (it goes in once every earlier part has its verdict, the next
one once it has its own) so the fault's effects belong to that part alone, and asks for the
other profile for ``profile-refused``. Robot-link faults (next issue) act here, on the link.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog
import zmq
import zmq.asyncio
from pydantic import ValidationError

from cellctl.config import SimGeometry
from cellctl.messages import BRIDGE_BOUND, Ack, Heartbeat, PartRequest, Ready, Verdict, encode
from cellctl.sim.faults import FaultPlan
from cellctl.sim.part import SimPart, sample_part
from cellctl.sim.world import SimClock

log = structlog.get_logger("cellctl.sim.robot")

PICK_AND_PLACE_S = 1.2  # take the inspected part out, put the next one in


class CellSide(Protocol):
    """What the robot does to the cell besides the link: the physical hand-over."""

    async def place(self, part: SimPart | None, fault: str | None) -> None:
        """``part`` is in the fixture now (the cell's cameras see it), ``fault`` planned for it."""


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
        cell: CellSide,
        clock: SimClock,
        geometry: SimGeometry,
        profile: str,
        parts: int,
        defect_rate: float,
        seed: int,
        *,
        plan: FaultPlan | None = None,
        other_profile: str | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._cell = cell
        self._clock = clock
        self._geometry = geometry
        self._profile = profile
        self._other_profile = other_profile or profile  # what profile-refused asks for
        self._plan = plan or FaultPlan()
        self._parts = parts
        self._defect_rate = defect_rate
        self._rng = np.random.default_rng([seed, 4242])
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._feeding: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one ready is answered at a time
        self._progress = asyncio.Condition()  # notified on every verdict
        self._in_fixture: PartRequest | None = None  # announced, not yet taken out
        self._isolating = False  # the part in the fixture carries a fault
        self.fed: dict[str, SimPart] = {}
        self.faults: dict[str, str] = {}  # part_id -> the fault planned (and armed) for it
        self.sorted: dict[str, Sorted] = {}
        self.bins: Counter[int] = Counter()
        self.malformed = 0
        self.duplicates = 0  # resends of a verdict already acknowledged
        self.rejudged = 0  # a second verdict (another seq) for a part already sorted
        self.reannounced = 0  # parts announced again to a cell that never took them
        self.stale_readies = 0  # readies of a cell that died before they were answered
        self._generation = 0  # bumped when the cell process is known to have died
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
                task = asyncio.create_task(self._on_ready(identity, message, self._generation))
                self._feeding.add(task)
                task.add_done_callback(self._feeding.discard)
            elif isinstance(message, Verdict):
                await self._sort(identity, message)
            elif isinstance(message, Heartbeat):
                await self._sock.send_multipart([identity, encode(Heartbeat(sender="sim-robot"))])

    @property
    def in_fixture(self) -> str | None:
        """The part announced last and not taken out yet (taken out at the next ready)."""
        return self._in_fixture.part_id if self._in_fixture is not None else None

    def cell_restarted(self) -> None:
        """The cell's process died (its supervisor saw it): a ready it sent and that is not
        answered yet asks for nothing any more; its successor sends its own."""
        self._generation += 1

    def _stale(self, generation: int, what: str) -> bool:
        if generation == self._generation:
            return False
        self.stale_readies += 1
        log.warning("robot.stale_ready", dropped=what)
        return True

    async def _on_ready(self, identity: bytes, ready: Ready, generation: int) -> None:
        async with self._lock:
            if self._stale(generation, "ready"):
                return
            current = self._in_fixture
            # a cell that predates the ``accepted`` field takes every announced part
            accepted = getattr(ready, "accepted", current.part_id if current is not None else None)
            if current is not None and accepted != current.part_id:
                self.reannounced += 1
                log.warning("robot.reannounce", part_id=current.part_id, accepted=accepted)
                await self._send(identity, current)
                return
            self._in_fixture = None  # taken out: the verdict says which bin
            await self._feed(identity, generation)

    async def _feed(self, identity: bytes, generation: int) -> None:
        if len(self.fed) >= self._parts:
            return  # input bin empty
        number = len(self.fed) + 1
        part_id = f"P{number:05d}"
        part = sample_part(self._rng, self._geometry, part_id, bool(self._rng.random() < self._defect_rate))
        fault = self._plan.fault_for(number)
        if fault is not None or self._isolating:
            await self._quiet()  # a faulted part is alone in the cell
        self._isolating = fault is not None
        self.fed[part_id] = part
        if fault is not None:
            self.faults[part_id] = fault
        await self._clock.sleep(PICK_AND_PLACE_S)
        await self._cell.place(part, fault)
        profile = self._other_profile if fault == "profile-refused" else self._profile
        request = PartRequest(part_id=part_id, profile=profile)
        self._in_fixture = request
        # no await between this check and the send: an answer never reaches the successor of
        # the cell that asked (it would take it as the answer to its own ready: two parts)
        if self._stale(generation, part_id):
            return  # in the fixture, not announced: the successor's ready gets it announced
        await self._send(identity, request)

    async def _quiet(self) -> None:
        """Until every part fed so far has its verdict."""
        async with self._progress:
            await self._progress.wait_for(lambda: all(p in self.sorted for p in self.fed))

    async def _send(self, identity: bytes, request: PartRequest) -> None:
        assert self._sock is not None
        await self._sock.send_multipart([identity, encode(request)])

    async def _sort(self, identity: bytes, verdict: Verdict) -> None:
        assert self._sock is not None
        previous = self.sorted.get(verdict.part_id)
        if previous is not None and previous.seq == verdict.seq:
            self.duplicates += 1  # a resend: acknowledge again, sort once
        elif previous is not None:
            self.rejudged += 1  # the part is in its bin already: the first verdict moved it
            log.warning("robot.rejudged", part_id=verdict.part_id, seq=verdict.seq, first_seq=previous.seq)
        elif verdict.part_id in self.fed:
            part = self.fed[verdict.part_id]
            self.sorted[verdict.part_id] = Sorted(
                verdict.part_id,
                part.defective,
                verdict.verdict.value,
                int(verdict.bin),
                verdict.seq,
                verdict.latency_ms,
            )
            self.bins[int(verdict.bin)] += 1
        else:
            log.warning("robot.unknown_part", part_id=verdict.part_id, seq=verdict.seq)
        ack = Ack(cell_id=verdict.cell_id, seq=verdict.seq, bin=verdict.bin)
        await self._sock.send_multipart([identity, encode(ack)])
        async with self._progress:
            self._progress.notify_all()
        if len(self.sorted) >= self._parts:
            self.done.set()
