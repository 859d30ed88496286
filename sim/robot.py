"""The simulated robot: feeds parts into the fixture, sorts them by verdict, and counts.

``SimRobot`` is the robot side of the bridge (``cellctl.bridge.robot.RobotSide``): the sim's
``BridgeServer`` (``sim/bridge.py``) calls it directly, or the KUKA client calls it through the
simulated KRC (``sim/krc.py``, ``--via-bridge``). It places each part with the configured defect
rate, drops each part in the bin its verdict names, and counts where each part went against
the ground truth.

One part per ``ready``: ``ready.accepted`` names the part the cell last durably took from the
fixture; if the part still in the fixture is not that one, the cell never took it (it died, or
the answer was lost with the bridge) and the same part is announced again; otherwise it is
taken out and the next one put in. Which ready wins when several are open is the bridge's
business (the latest request of a cell wins); the robot answers each one it is asked.

The robot knows which part it placed for which request, so it counts what a real robot could
only suffer: ``wrong_part`` (a verdict whose (request_id, part_id) is not a pair it placed, or
for a part it never placed) and ``duplicates_acted`` (a verdict acted on twice, or a second
verdict for a part already sorted). Each part is sorted at most once.

With a fault plan (``sim/faults.py``) the robot places each part together with its planned
fault, isolates a faulted part (it goes in once every earlier part has its verdict, the next
one once it has its own) so the fault's effects belong to that part alone, asks for the other
profile for ``profile-refused`` and refuses the verdict of a ``refused-ack`` part (res 4,
"bin full": the part is held, in no bin).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog

from cellctl.bridge.robot import Placed, RobotSide, SortResult
from cellctl.config import SimGeometry
from cellctl.link.protocol import Ready, Refused, Verdict
from cellctl.sim.conditions import DEFAULT, Conditions
from cellctl.sim.faults import CELL_FAULTS, FaultPlan
from cellctl.sim.part import SimPart, sample_part
from cellctl.sim.world import SimClock

log = structlog.get_logger("cellctl.sim.robot")

PICK_AND_PLACE_S = 1.2  # take the inspected part out, put the next one in
RES_BIN_FULL = 4  # the robot's refusal code for refused-ack (README, "Refused acknowledgements")
RES_NO_SUCH_PART = 5  # a verdict for a part the robot never placed: nothing to sort


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


# Called before a faulted part is announced (awaited: the part waits), with its id and fault;
# the sim bridge hangs the faults that need the cell's request open here (forged-verdict).
BeforeAnnounce = Callable[[str, str], Awaitable[None]]


class SimRobot:
    def __init__(
        self,
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
        conditions: Conditions = DEFAULT,
        min_indication: tuple[float, float] = (1.0, 30.0),  # the profile's (length mm, contrast): the truth
    ) -> None:
        self._cell = cell
        self._conditions = conditions
        self._min_length_mm, self._min_contrast = min_indication
        self._clock = clock
        self._geometry = geometry
        self._profile = profile
        self._other_profile = other_profile or profile  # what profile-refused asks for
        self._plan = plan or FaultPlan()
        self._parts = parts
        self._defect_rate = defect_rate
        self._rng = np.random.default_rng([seed, 4242])
        self._lock = asyncio.Lock()  # one ready is answered at a time
        self._progress = asyncio.Condition()  # notified on every verdict acted on
        self._in_fixture: Placed | None = None  # announced (or being placed), not yet taken out
        self._placed = False  # the part in the fixture is in the world (the hand-over completed)
        self._isolating = False  # the part in the fixture carries a fault
        self.before_announce: BeforeAnnounce | None = None
        self.fed: dict[str, SimPart] = {}
        self.faults: dict[str, str] = {}  # part_id -> the fault planned (and armed) for it
        self.sorted: dict[str, Sorted] = {}
        self.held: dict[str, Sorted] = {}  # refused (res != 0): the part is in no bin
        self.bins: Counter[int] = Counter()
        self.placed_for: dict[str, str] = {}  # request_id -> the part announced for it
        self.announced_at: dict[str, float] = {}  # part_id -> monotonic time of its last announcement
        self.acted: dict[tuple[str, str, int], str] = {}  # (cell_id, boot_id, seq) -> part_id
        self.wrong_part = 0
        self.duplicates_acted = 0
        self.reannounced = 0  # parts announced again to a cell that never took them
        self.refusals: Counter[str] = Counter()  # the cell's refusals of what the bridge sent, by reason
        self.done = asyncio.Event()

    # --- RobotSide ----------------------------------------------------------------------------

    async def offer(self, cell_id: str, ready: Ready) -> Placed | None:
        async with self._lock:
            current = self._in_fixture
            if current is not None and ready.accepted != current.part_id:
                self.reannounced += 1
                log.warning("robot.reannounce", part_id=current.part_id, accepted=ready.accepted)
                if not self._placed:  # the hand-over was cut short (the offer was cancelled)
                    fault = self.faults.get(current.part_id)
                    await self._cell.place(self.fed[current.part_id], fault if fault in CELL_FAULTS else None)
                    self._placed = True
                return self._announce(ready, current)
            self._in_fixture = None  # taken out: its verdict says which bin
            return await self._feed(ready)

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult:
        part_id = verdict.part_id
        key = (cell_id, verdict.boot_id, verdict.seq)
        if verdict.request_id is not None:  # the link's verdict itself: the pair is checked here
            self.check_pair(verdict)
        elif part_id not in self.announced_at:  # through the KRC (EKI carries no request id:
            self.wrong_part += 1  # CheckedRobot checked the pair in front of the KUKA client)
            log.error("robot.wrong_part", part_id=part_id, request_id=None, seq=verdict.seq)
        if part_id not in self.fed:
            return SortResult(RES_NO_SUCH_PART, "no such part")
        if key in self.acted:
            self.duplicates_acted += 1  # the bridge let one verdict through twice
            log.error("robot.verdict_acted_twice", part_id=part_id, seq=verdict.seq, boot_id=verdict.boot_id)
            return SortResult(0)
        self.acted[key] = part_id
        if part_id in self.sorted or part_id in self.held:
            self.duplicates_acted += 1  # a second verdict (another seq) for a part already dealt with
            log.error("robot.part_sorted_twice", part_id=part_id, seq=verdict.seq)
            return SortResult(0)
        part = self.fed[part_id]
        entry = Sorted(
            part_id, part.defective, verdict.verdict.value, int(verdict.bin), verdict.seq, verdict.latency_ms
        )
        if self.faults.get(part_id) == "refused-ack":
            self.held[part_id] = entry
            log.warning("robot.refused", part_id=part_id, seq=verdict.seq, res=RES_BIN_FULL)
            result = SortResult(RES_BIN_FULL, "bin full")
        else:
            self.sorted[part_id] = entry
            self.bins[int(verdict.bin)] += 1
            result = SortResult(0)
        async with self._progress:
            self._progress.notify_all()
        if len(self.sorted) + len(self.held) >= self._parts:
            self.done.set()
        return result

    def check_pair(self, verdict: Verdict) -> bool:
        """Is (request_id, part_id) a pair the robot placed? Counted in ``wrong_part`` if not."""
        placed = self.placed_for.get(verdict.request_id) if verdict.request_id is not None else None
        if verdict.part_id in self.fed and placed == verdict.part_id:
            return True
        self.wrong_part += 1
        log.error(
            "robot.wrong_part", part_id=verdict.part_id, request_id=verdict.request_id, placed=placed, seq=verdict.seq
        )
        return False

    def refused(self, cell_id: str, refused: Refused) -> None:
        self.refusals[str(refused.reason)] += 1

    def health(self) -> dict[str, object]:
        return {
            "fed": len(self.fed),
            "sorted": len(self.sorted),
            "held": len(self.held),
            "in_fixture": self.in_fixture,
            "wrong_part": self.wrong_part,
            "duplicates_acted": self.duplicates_acted,
            "reannounced": self.reannounced,
        }

    # --- for the run and the sim bridge -------------------------------------------------------

    @property
    def in_fixture(self) -> str | None:
        """The part announced last and not taken out yet (taken out at the next ready)."""
        return self._in_fixture.part_id if self._in_fixture is not None else None

    def part_of(self, cell_id: str, boot_id: str, seq: int) -> str | None:
        """The part the verdict ``seq`` of that cell's run was about, once the robot acted on it."""
        return self.acted.get((cell_id, boot_id, seq))

    def fault_of(self, part_id: str | None) -> str | None:
        return self.faults.get(part_id) if part_id is not None else None

    # --- feeding ------------------------------------------------------------------------------

    async def _feed(self, ready: Ready) -> Placed | None:
        if len(self.fed) >= self._parts:
            return None  # input bin empty: the request stays open
        number = len(self.fed) + 1
        part_id = f"P{number:05d}"
        defective = bool(self._rng.random() < self._defect_rate)
        part = sample_part(
            self._rng,
            self._geometry,
            part_id,
            defective,
            conditions=self._conditions,
            min_length_mm=self._min_length_mm,
            min_contrast=self._min_contrast,
        )
        fault = self._plan.fault_for(number)
        if fault is not None or self._isolating:
            await self._quiet()  # a faulted part is alone in the cell
        self._isolating = fault is not None
        self.fed[part_id] = part
        if fault is not None:
            self.faults[part_id] = fault
        profile = self._other_profile if fault == "profile-refused" else self._profile
        # in the fixture from here on: an offer cancelled during the hand-over leaves it there,
        # and the next ready (accepted is not this part) announces it again
        self._in_fixture, self._placed = Placed(part_id, profile), False
        await self._clock.sleep(PICK_AND_PLACE_S)
        await self._cell.place(part, fault if fault in CELL_FAULTS else None)  # link faults: the bridge's
        self._placed = True
        if fault is not None and self.before_announce is not None:
            await self.before_announce(part_id, fault)
        return self._announce(ready, self._in_fixture)

    def _announce(self, ready: Ready, placed: Placed) -> Placed:
        self.placed_for[ready.request_id] = placed.part_id
        self.announced_at[placed.part_id] = time.monotonic()
        return placed

    async def _quiet(self) -> None:
        """Until every part fed so far has its verdict (sorted, or refused and held)."""
        async with self._progress:
            await self._progress.wait_for(lambda: all(p in self.sorted or p in self.held for p in self.fed))


class CheckedRobot:
    """``--via-bridge``: the bridge's robot side is the KUKA client, and the EKI sort message
    carries no request id; this puts the sim robot's pair check (and its count of the cell's
    refusals) in front of it, on the link's verdict as the bridge received it."""

    def __init__(self, inner: RobotSide, sim: SimRobot) -> None:
        self._inner = inner
        self._sim = sim

    async def offer(self, cell_id: str, ready: Ready) -> Placed | None:
        return await self._inner.offer(cell_id, ready)

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult:
        self._sim.check_pair(verdict)
        return await self._inner.sort(cell_id, verdict)

    def refused(self, cell_id: str, refused: Refused) -> None:
        self._sim.refused(cell_id, refused)
        self._inner.refused(cell_id, refused)

    def health(self) -> dict[str, object]:
        return self._inner.health()
