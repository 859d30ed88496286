"""Named faults that ``cellctl sim --faults`` injects at random parts (deterministic per seed).

``plan_faults`` picks the parts; ``sim/injector.py`` arms each fault when its part is placed in
the fixture, the simulated robot does the robot's share (another profile, SIGHUP, SIGKILL, a refused sort),
the simulated bridge (``sim/bridge.py``) acts on the link. Where a fault acts:

- WORLD: the simulated physics (camera, turntable, light), armed through ``world.faults``;
- SERIAL: the wire of a pty emulator (garbage, unplug);
- MODEL / RECORDS: the daemon's inferencer (wrapped) and its records connection;
- ROBOT / PROCESS: what the robot asks for, signals to the daemon process;
- LINK: the robot link between the bridge and the cell (the bridge goes away or restarts,
  misbehaves on the wire, rogue processes without the keys bind or connect to the endpoint),
  and with ``--via-bridge`` the EKI connection between the bridge and the simulated KRC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CELL_FAULTS: tuple[str, ...] = (  # issue 6: the cell's devices, model, records, process
    "camera-timeout",
    "camera-disconnect",
    "incomplete-frame",
    "stepper-alarm",
    "serial-garbage",
    "serial-unplug",
    "light-fault",
    "model-nan",
    "model-error",
    "records-readonly",
    "disk-full",
    "profile-refused",
    "daemon-kill",
    "sighup",
)
LINK_FAULTS: tuple[str, ...] = (
    "bridge-down",  # the bridge is gone for longer than the cell's delivery deadline
    "bridge-restart",  # closed for about a second, back with a new boot id
    "duplicate-part",
    "unsolicited-part",  # a part for a request the cell never opened
    "multipart",  # a two-frame message
    "stale-request",  # a part answering the previous request
    "forged-ack",  # wrong boot id and bin
    "wrong-cell-ack",
    "refused-ack",  # the robot refuses the verdict (bin full): the part is held, not sorted
    "late-ack",  # the ack comes after the delivery deadline
    "duplicate-ack",
    "rogue-bridge",  # a process without the keys binds the endpoint during a bridge restart
    "forged-verdict",  # processes without the (right) keys send verdicts, parts, acks to the bridge
    "flood",  # 2,000 parts for no request and oversized frames
    "krc-disconnect",  # the simulated KRC drops the EKI connection (--via-bridge)
    "krc-garbage",  # the simulated KRC sends bytes that are not EKI XML (--via-bridge)
)
FAULT_NAMES: tuple[str, ...] = CELL_FAULTS + LINK_FAULTS

# Faults after which a PASS is still a complete, valid inspection: the reload changes nothing
# the part sees, and a killed part is either judged RECHECK on restart or re-announced and
# inspected again from the start by the new daemon.
# A link fault never touches the pixels: its part's PASS is a complete inspection.
HARMLESS_TO_INSPECTION = frozenset({"sighup", "daemon-kill", *LINK_FAULTS})
# Faults whose harm is to the record, not to the pixels: a PASS is wrong only without a durable record.
RECORDS_FAULTS = frozenset({"records-readonly", "disk-full"})
# Faults that need the daemon in its own process (a signal to it, or its death).
PROCESS_FAULTS = frozenset({"daemon-kill"})
# Faults of the EKI connection: they need the KUKA client and the simulated KRC (--via-bridge).
VIA_BRIDGE_FAULTS = frozenset({"krc-disconnect", "krc-garbage"})
# Faults that take the link down: never planned on the last part, so that a part is always
# judged after the outage (production resumed is then something a run can show).
OUTAGE_FAULTS = frozenset({"bridge-down", "bridge-restart", "rogue-bridge"})

WARM_PARTS = 3  # never a fault on the first parts: the cell is warm (models loaded, homed) first
PARTS_PER_FAULT = 40  # each fault about once per this many parts, at least once


class FaultNameError(ValueError):
    """An unknown fault name on the command line."""


def parse_fault_names(text: str) -> tuple[str, ...]:
    """``"a,b"`` to ``("a", "b")``: each known, no repeats, order kept; "" is no fault."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in FAULT_NAMES:
            raise FaultNameError(f"unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        if name not in names:
            names.append(name)
    return tuple(names)


def min_parts(names: tuple[str, ...]) -> int:
    """The fewest parts a run with these faults needs: the warm-up, one part per fault, and
    one more after the last outage."""
    if not names:
        return 1
    return WARM_PARTS + len(names) + int(bool(OUTAGE_FAULTS & set(names)))


@dataclass(frozen=True)
class FaultPlan:
    """Which fault strikes which part (by part number, 1-based); at most one per part."""

    at: dict[int, str] = field(default_factory=dict)

    def fault_for(self, number: int) -> str | None:
        return self.at.get(number)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.at.values()))


def plan_faults(names: tuple[str, ...], parts: int, seed: int) -> FaultPlan:
    """Spread ``names`` over parts ``WARM_PARTS+1 .. parts``: each about ``parts // 40`` times
    and at least once, never two on one part, deterministic for ``seed``."""
    if not names:
        return FaultPlan()
    slots = list(range(WARM_PARTS + 1, parts + 1))
    if parts < min_parts(names):
        raise ValueError(f"--parts {parts} is too few for {len(names)} faults (need at least {min_parts(names)})")
    rng = np.random.default_rng([seed, 777])
    each = max(1, parts // PARTS_PER_FAULT)
    each = min(each, len(slots) // len(names))  # never more injections than parts to carry them
    chosen = rng.choice(len(slots), size=each * len(names), replace=False)
    at = {slots[int(i)]: names[k % len(names)] for k, i in enumerate(chosen)}
    if at.get(parts) in OUTAGE_FAULTS:  # (only ever with link faults: issue 6's plans are unchanged)
        _off_the_last_part(at, parts)
    return FaultPlan(dict(sorted(at.items())))


def _off_the_last_part(at: dict[int, str], last: int) -> None:
    """Move the outage planned on the last part to the latest free part (or swap it with the
    latest fault that is not an outage): some part must come after every outage."""
    free = [n for n in range(last - 1, WARM_PARTS, -1) if n not in at]
    if free:
        at[free[0]] = at.pop(last)
        return
    other = next((n for n in range(last - 1, WARM_PARTS, -1) if at[n] not in OUTAGE_FAULTS), None)
    if other is not None:  # (every part carrying an outage needs 40+ outage kinds: never)
        at[last], at[other] = at[other], at[last]
