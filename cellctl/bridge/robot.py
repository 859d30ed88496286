"""What the bridge needs from the robot behind it. ``cellctl bridge`` talks to a KUKA KRC over
EthernetKRL (``cellctl.bridge.kuka``); ``cellctl sim`` plugs in the simulated robot directly,
or the KUKA client in front of the simulated KRC (``--via-bridge``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cellctl.link.protocol import Ready, Refused, Verdict


@dataclass(frozen=True)
class Placed:
    """The part the robot put in (or left in) the fixture, answering one ready."""

    part_id: str
    profile: str | None = None


@dataclass(frozen=True)
class SortResult:
    """The robot's answer to a verdict: ``res`` 0, it acts on it (the part goes to the verdict's
    bin); any other value, it refused it and keeps the part out of every bin (README, "Refused
    acknowledgements")."""

    res: int
    detail: str | None = None


class RobotSide(Protocol):
    async def offer(self, cell_id: str, ready: Ready) -> Placed | None:
        """Called once per ``ready``, one at a time per cell. Put a part in the fixture, or, when
        the part already there is not ``ready.accepted`` (the cell never took it), announce that
        one again. None: no part to give (input empty); the cell's request simply stays open.
        The bridge drops the answer if a newer ready of the cell superseded this one meanwhile."""
        ...

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult:
        """Act on one verdict. The bridge calls it at most once per (cell_id, boot_id, seq) that
        completed; an exception means "not acted on": the bridge acknowledges nothing and a
        resend of the verdict calls it again."""
        ...

    def refused(self, cell_id: str, refused: Refused) -> None:
        """The cell refused a message the bridge sent (for counts and the operator's log)."""
        ...

    def health(self) -> dict[str, object]: ...
