"""One part's acquisition: light on, one revolution with the head shots and the line-scan
strip, light off. Every step has its own timeout; a failed step ends the acquisition with a
fault (the part becomes RECHECK) and the turntable is homed for the next part."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from cellctl.config import ResolvedProfile, Timeouts
from cellctl.devices import CellDevices
from cellctl.drivers import CellError
from cellctl.drivers.camera import Frame
from cellctl.messages import PartRequest

log = structlog.get_logger("cellctl.cycle")
T = TypeVar("T")


@dataclass
class Acquisition:
    request: PartRequest
    profile: ResolvedProfile
    seq: int  # the verdict sequence number this part will carry
    started_s: float  # monotonic: the part's trigger, start of latency
    head_frames: list[Frame] = field(default_factory=list)
    strip: Frame | None = None
    fault: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Steps:
    """Times each step and names the one that failed."""

    def __init__(self, acq: Acquisition) -> None:
        self.acq = acq
        self.current = "start"

    async def run(self, name: str, step: Awaitable[T], timeout_s: float) -> T:
        self.current = name
        t0 = time.monotonic()
        result = await asyncio.wait_for(step, timeout_s)
        key = name.split("@")[0]
        self.acq.timings_ms[key] = self.acq.timings_ms.get(key, 0.0) + (time.monotonic() - t0) * 1e3
        return result


async def _fresh(grab: Callable[[float], Awaitable[Frame]], since_s: float, timeout_s: float) -> Frame:
    """Next frame that arrived after ``since_s``; a late frame of an aborted part is skipped."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = await grab(max(deadline - time.monotonic(), 0.0))
        if frame.timestamp_s >= since_s:
            return frame


async def acquire(
    devices: CellDevices, request: PartRequest, rp: ResolvedProfile, timeouts: Timeouts, seq: int
) -> Acquisition:
    acq = Acquisition(request, rp, seq, time.monotonic())
    steps = _Steps(acq)
    p = rp.profile
    grabs: list[asyncio.Task[Frame]] = []
    try:
        await steps.run("light_on", devices.lighting.on(timeouts.light_s), timeouts.light_s)
        await devices.line_camera.begin_strip()
        position = 0.0
        for angle in p.head_positions_deg:
            if angle != position:
                await steps.run(f"move@{angle:g}", devices.stage.move_by(angle - position, timeouts.move_s), timeouts.move_s)
                position = angle
            shot_s = time.monotonic()
            await steps.run("trigger", devices.frame_camera.trigger(), timeouts.frame_s)
            grabs.append(asyncio.create_task(_fresh(devices.frame_camera.grab, shot_s, timeouts.frame_s)))
            # the part must stand still while the sensor integrates; the transfer may overlap the move
            await asyncio.sleep(p.frame_camera.exposure_us * 1e-6)
        await steps.run("move@360", devices.stage.move_by(360.0 - position, timeouts.move_s), timeouts.move_s)
        steps.current = "frame"
        t0 = time.monotonic()
        acq.head_frames = [await g for g in grabs]
        acq.timings_ms["frames_wait"] = (time.monotonic() - t0) * 1e3
        acq.strip = await steps.run(
            "strip", _fresh(devices.line_camera.grab, acq.started_s, timeouts.strip_s), timeouts.strip_s + 0.1
        )
    except (CellError, TimeoutError) as exc:
        acq.fault = f"{steps.current.split('@')[0]}: {exc or type(exc).__name__}"
    finally:
        for g in grabs:
            g.cancel()
        await asyncio.gather(*grabs, return_exceptions=True)
        try:
            await steps.run("light_off", devices.lighting.off(timeouts.light_s), timeouts.light_s)
        except (CellError, TimeoutError) as exc:
            acq.fault = acq.fault or f"light_off: {exc or type(exc).__name__}"
    if acq.fault is not None:
        log.warning("acquire.fault", part_id=request.part_id, seq=seq, profile=rp.name, fault=acq.fault)
        try:
            await devices.stage.home(timeouts.move_s)
        except (CellError, TimeoutError) as exc:
            log.error("stage.home_failed", part_id=request.part_id, seq=seq, profile=rp.name, error=str(exc))
    acq.timings_ms["acquire"] = (time.monotonic() - acq.started_s) * 1e3
    return acq
