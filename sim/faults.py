"""Named faults that ``cellctl sim --faults`` injects at random parts (deterministic per seed).

``plan_faults`` picks the parts; ``sim/injector.py`` arms each fault when its part is placed in
the fixture, the simulated robot does the robot's share (another profile, SIGHUP, SIGKILL).
Where a fault acts (robot-link faults of the next issue add a ``LINK`` kind here):

- WORLD: the simulated physics (camera, turntable, light), armed through ``world.faults``;
- SERIAL: the wire of a pty emulator (garbage, unplug);
- MODEL / RECORDS: the daemon's inferencer (wrapped) and its records connection;
- ROBOT / PROCESS: what the robot asks for, signals to the daemon process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAULT_NAMES: tuple[str, ...] = (
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

# Faults after which a PASS is still a complete, valid inspection: the reload changes nothing
# the part sees, and a killed part is either judged RECHECK on restart or re-announced and
# inspected again from the start by the new daemon.
HARMLESS_TO_INSPECTION = frozenset({"sighup", "daemon-kill"})
# Faults whose harm is to the record, not to the pixels: a PASS is wrong only without a durable record.
RECORDS_FAULTS = frozenset({"records-readonly", "disk-full"})
# Faults that need the daemon in its own process (a signal to it, or its death).
PROCESS_FAULTS = frozenset({"daemon-kill"})

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
    """The fewest parts a run with these faults needs: the warm-up and one part per fault."""
    return WARM_PARTS + len(names) if names else 1


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
    if len(slots) < len(names):
        raise ValueError(f"--parts {parts} is too few for {len(names)} faults (need at least {min_parts(names)})")
    rng = np.random.default_rng([seed, 777])
    each = max(1, parts // PARTS_PER_FAULT)
    each = min(each, len(slots) // len(names))  # never more injections than parts to carry them
    chosen = rng.choice(len(slots), size=each * len(names), replace=False)
    at = {slots[int(i)]: names[k % len(names)] for k, i in enumerate(chosen)}
    return FaultPlan(dict(sorted(at.items())))
