"""One part's acquisition: light on, one revolution with the head shots and the line-scan
strip, light off.

Each device call carries its step's deadline and the driver keeps it (this layer adds no
timeout of its own). A failed step ends the acquisition with a ``Fault`` naming the step, the
light goes off whatever happened, and the turntable is homed for the next part. Nothing
here raises: an unexpected error is a fault of the step it happened in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from cellctl.config import PartProfile, ResolvedProfile, Timeouts
from cellctl.devices import CellDevices
from cellctl.drivers import CellError
from cellctl.drivers.camera import Frame
from cellctl.fault import Fault, Step
from cellctl.link.protocol import Part

log = structlog.get_logger("cellctl.pipeline.acquire")
T = TypeVar("T")
WATCHDOG_MARGIN_S = 5.0  # on top of the sum of the step deadlines; see acquisition_budget_s


@dataclass
class Acquisition:
    part: Part  # the part message that answered the cell's open request
    profile_name: str
    profile: ResolvedProfile | None  # None: the part could not be inspected under any profile
    seq: int  # durable, taken when the part was accepted; the verdict carries it
    started_s: float  # monotonic: the part's trigger, start of latency
    boot_id: str  # the run of the daemon that accepted the part
    head_frames: list[Frame] = field(default_factory=list)
    strip: Frame | None = None
    fault: Fault | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    step: Step = Step.ACCEPT  # the step under way (what a watchdog expiry is blamed on)

    @property
    def part_id(self) -> str:
        return self.part.part_id

    @property
    def request_id(self) -> str:
        return self.part.request_id

    def ids(self) -> dict[str, object]:
        """What every per-part log event carries."""
        return {"part_id": self.part.part_id, "seq": self.seq, "profile": self.profile_name}


def acquisition_budget_s(timeouts: Timeouts, profile: PartProfile) -> float:
    """The longest a correct acquisition can take: every step at its deadline.

    Only a driver that ignores its own deadline (a bug) can exceed it; the cycle's watchdog
    then ends the part as RECHECK rather than hold the cell forever.
    """
    t, shots = timeouts, len(profile.head_positions_deg)
    moves = shots + 1  # to each head position, then round to 360
    return (
        2 * t.light_s
        + profile.lighting.warmup_s
        + t.frame_s
        + moves * t.move_s
        + 2 * shots * t.frame_s
        + t.strip_s
        + t.home_s
        + WATCHDOG_MARGIN_S
    )


class _Steps:
    """Runs and times each step, recording which one is under way."""

    def __init__(self, acq: Acquisition) -> None:
        self.acq = acq

    async def run(self, step: Step, action: Awaitable[T]) -> T:
        self.acq.step = step
        t0 = time.monotonic()
        result = await action
        key = step.value
        self.acq.timings_ms[key] = self.acq.timings_ms.get(key, 0.0) + (time.monotonic() - t0) * 1e3
        return result


async def _fresh(grab: Callable[[float], Awaitable[Frame]], since_s: float, timeout_s: float) -> Frame:
    """Next frame that arrived after ``since_s``; a late frame of an aborted part is skipped."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = await grab(max(deadline - time.monotonic(), 0.0))
        if frame.timestamp_s >= since_s:
            return frame


async def acquire(devices: CellDevices, acq: Acquisition, timeouts: Timeouts) -> Acquisition:
    """Fill ``acq`` with the head frames and the strip, or with the fault that stopped it."""
    assert acq.profile is not None
    p = acq.profile.profile
    t = timeouts
    steps = _Steps(acq)
    grabs: list[asyncio.Task[Frame]] = []
    try:
        # the warm-up is part of switching on: the driver holds it inside the step's deadline
        await steps.run(Step.LIGHT_ON, devices.lighting.on(t.light_s + p.lighting.warmup_s))
        await steps.run(Step.BEGIN_STRIP, devices.line_camera.begin_strip(t.frame_s))
        position = 0.0
        for angle in p.head_positions_deg:
            if angle != position:
                await steps.run(Step.MOVE, devices.stage.move_by(angle - position, t.move_s))
                position = angle
            shot_s = time.monotonic()
            await steps.run(Step.TRIGGER, devices.frame_camera.trigger(t.frame_s))
            grabs.append(asyncio.create_task(_fresh(devices.frame_camera.grab, shot_s, t.frame_s)))
            # the part must stand still while the sensor integrates; the transfer may overlap the move
            await asyncio.sleep(p.frame_camera.exposure_us * 1e-6)
        await steps.run(Step.MOVE, devices.stage.move_by(360.0 - position, t.move_s))
        acq.step = Step.FRAME
        t0 = time.monotonic()
        acq.head_frames = [await g for g in grabs]
        acq.timings_ms["frames_wait"] = (time.monotonic() - t0) * 1e3
        acq.strip = await steps.run(Step.STRIP, _fresh(devices.line_camera.grab, acq.started_s, t.strip_s))
    except Exception as exc:  # noqa: BLE001 - any failure of a step is that step's fault, never the cell's
        acq.fault = _fault(acq, exc)
    finally:
        for g in grabs:
            g.cancel()
        await asyncio.gather(*grabs, return_exceptions=True)
        try:
            await steps.run(Step.LIGHT_OFF, devices.lighting.off(t.light_s))
        except Exception as exc:  # noqa: BLE001
            acq.fault = acq.fault or _fault(acq, exc)
    if acq.fault is not None:
        await home_after_fault(devices, acq, t.home_s)
    acq.timings_ms["acquire"] = (time.monotonic() - acq.started_s) * 1e3
    return acq


def _fault(acq: Acquisition, exc: BaseException) -> Fault:
    fault = Fault.of(acq.step, exc)
    event = log.warning if isinstance(exc, CellError | TimeoutError) else log.error
    event(
        "acquire.fault",
        **acq.ids(),
        step=fault.step.value,
        fault=fault.detail,
        error_type=type(exc).__name__,
        exc_info=not isinstance(exc, CellError | TimeoutError),
    )
    return fault


async def home_after_fault(devices: CellDevices, acq: Acquisition, timeout_s: float) -> None:
    """After a fault the turntable is somewhere mid-turn: home it for the next part."""
    try:
        await devices.stage.home(timeout_s)
    except Exception as exc:  # noqa: BLE001 - the next part's first move reports a lasting fault
        log.error("stage.home_failed", **acq.ids(), error=str(exc))
