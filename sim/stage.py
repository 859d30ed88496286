"""Simulated turntable: trapezoidal moves that turn the world's encoder.

URL: ``sim://[?seed=S&time_scale=X]``. The same contract as the SCL driver (tests/contract):
every call ends within its ``timeout_s``; settings that skipped validation are refused;
``world.faults.stage_stall`` makes the next moves never arrive: DriverTimeout once their
timeout has run out in simulated time (at once at time scale 0); ``stage_alarm_bits`` stops
the next move halfway with a StageAlarm naming the alarms, after which the drive stays
disabled (moves raise DriverIOError) until home() or connect() resets it, as the SCL drive does.
Homing is not affected by either fault (as in the SCL emulator). Not modelled: following
error, stalls under load.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from cellctl.drivers import DeviceUrl, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.stage import MotionSettings, StageAlarm
from cellctl.drivers.stage.scl import decode_alarms
from cellctl.sim.world import world_from

STEPS_PER_MOVE = 16  # encoder updates per move: enough for the line camera to follow
CONNECT_S = 0.05
HOME_S = 0.1


def move_time_s(revs: float, speed_rps: float, accel_rps2: float) -> float:
    """Duration of a trapezoidal (or triangular, if short) move of ``revs`` revolutions."""
    revs = abs(revs)
    ramp_revs = speed_rps**2 / accel_rps2  # accelerate + decelerate
    if revs <= ramp_revs:
        return 2.0 * math.sqrt(revs / accel_rps2)
    return revs / speed_rps + speed_rps / accel_rps2


class SimStage:
    name = "sim stage"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._world = world_from(context, url)
        self._settings = MotionSettings()
        self._connected = False
        self._closed = False
        self._alarm_bits = 0  # the drive disabled itself; home() or connect() resets it

    def health(self) -> dict[str, Any]:
        return {"connected": self._connected, "reconnects": 0, "identity": "simulated"}

    async def connect(self, timeout_s: float) -> None:
        self._usable(connected=False)
        await asyncio.sleep(min(CONNECT_S * self._world.time_scale, timeout_s))
        self._connected, self._alarm_bits = True, 0

    async def configure(self, settings: MotionSettings, timeout_s: float) -> None:
        self._usable()
        try:
            MotionSettings.model_validate(settings.model_dump())  # model_construct()ed settings
        except ValueError as exc:
            raise DriverInitError(f"{self.name}: motion settings refused: {exc}") from exc
        self._settings = settings

    async def home(self, timeout_s: float) -> None:
        self._usable()
        self._alarm_bits = 0  # a latched alarm is reset before homing (AR, ME)
        w = self._world
        w.encoder_count -= w.encoder_count % w.encoder_counts_per_rev  # index pulse: silent reset
        await self._within(w.clock.sleep(HOME_S), timeout_s, "homing")

    async def move_by(self, degrees: float, timeout_s: float) -> None:
        self._usable(enabled=True)
        if self._world.faults.stage_stall:
            # never in position: the driver gives up when the move's time has run out
            await asyncio.sleep(timeout_s * min(self._world.time_scale, 1.0))
            raise DriverTimeout(f"{self.name}: {degrees:g} deg move not done within {timeout_s:g} s (stalled)")
        await self._within(self._move(degrees), timeout_s, f"{degrees:g} deg move")

    async def close(self) -> None:
        self._closed, self._connected = True, False

    def _usable(self, connected: bool = True, enabled: bool = False) -> None:
        if self._closed:
            raise DriverIOError(f"{self.name}: closed")
        if connected and not self._connected:
            raise DriverIOError(f"{self.name}: not connected (call connect() first)")
        if enabled and self._alarm_bits:
            raise DriverIOError(
                f"{self.name}: drive disabled by alarm {', '.join(decode_alarms(self._alarm_bits))} "
                "(home() or connect() resets it)"
            )

    async def _within(self, step: Any, timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await step
        except TimeoutError as exc:
            if isinstance(exc, DriverIOError):
                raise
            raise DriverTimeout(f"{self.name}: {what} not done within {timeout_s:g} s") from exc

    async def _move(self, degrees: float) -> None:
        w, s = self._world, self._settings
        counts = round(degrees / 360.0 * w.encoder_counts_per_rev)
        duration = move_time_s(degrees / 360.0, s.speed_rps, s.accel_rps2)
        done = 0
        for i in range(1, STEPS_PER_MOVE + 1):
            target = counts * i // STEPS_PER_MOVE
            await w.clock.sleep(duration / STEPS_PER_MOVE)
            w.advance_encoder(target - done)
            done = target
            if i == STEPS_PER_MOVE // 2 and w.faults.stage_alarm_bits:
                bits, w.faults.stage_alarm_bits = w.faults.stage_alarm_bits, 0
                self._alarm_bits = bits  # the drive stops where it is and disables itself
                raise StageAlarm(self.name, bits, decode_alarms(bits))
        await w.clock.sleep(s.settle_ms / 1000.0)
