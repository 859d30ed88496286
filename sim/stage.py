"""Simulated turntable: trapezoidal moves that turn the world's encoder.

URL: ``sim://[?seed=S&time_scale=X]``. Not modelled: following error, stalls under load
(but ``world.faults.stage_stall`` makes it stop answering).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from cellctl.drivers import DeviceUrl, DriverTimeout
from cellctl.drivers.stage import MotionSettings
from cellctl.sim.world import world_from

STEPS_PER_MOVE = 16  # encoder updates per move: enough for the line camera to follow


def move_time_s(revs: float, speed_rps: float, accel_rps2: float) -> float:
    """Duration of a trapezoidal (or triangular, if short) move of ``revs`` revolutions."""
    revs = abs(revs)
    ramp_revs = speed_rps**2 / accel_rps2  # accelerate + decelerate
    if revs <= ramp_revs:
        return 2.0 * math.sqrt(revs / accel_rps2)
    return revs / speed_rps + speed_rps / accel_rps2


class SimStage:
    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._world = world_from(context, url)
        self._settings = MotionSettings()

    async def connect(self, timeout_s: float) -> None:
        await self._world.clock.sleep(0.05)

    async def configure(self, settings: MotionSettings) -> None:
        self._settings = settings

    async def home(self, timeout_s: float) -> None:
        w = self._world
        w.encoder_count -= w.encoder_count % w.encoder_counts_per_rev  # index pulse: silent reset
        await w.clock.sleep(0.1)

    async def move_by(self, degrees: float, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._move(degrees), timeout_s)
        except TimeoutError as exc:
            raise DriverTimeout(f"stage: not in position {timeout_s:g} s after a {degrees:g} deg move") from exc

    async def _move(self, degrees: float) -> None:
        w, s = self._world, self._settings
        if w.faults.stage_stall:
            await asyncio.Event().wait()  # never in position
        counts = round(degrees / 360.0 * w.encoder_counts_per_rev)
        duration = move_time_s(degrees / 360.0, s.speed_rps, s.accel_rps2)
        done = 0
        for i in range(1, STEPS_PER_MOVE + 1):
            target = counts * i // STEPS_PER_MOVE
            await w.clock.sleep(duration / STEPS_PER_MOVE)
            w.advance_encoder(target - done)
            done = target
        await w.clock.sleep(s.settle_ms / 1000.0)

    async def close(self) -> None:
        return None
