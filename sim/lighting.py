"""Simulated lighting controller: switching the channel sets the UV irradiance at the part.

URL: ``sim://[?seed=S&time_scale=X]``. The same contract as the Gardasoft driver
(tests/contract): settings beyond the controller's overdrive limits are refused at
configure() by the same check, a warm-up that does not fit in on()'s timeout is a
DriverTimeout, close() switches off. Not modelled: LED warm-up drift, strobe timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cellctl.drivers import DeviceUrl, DriverIOError, DriverTimeout
from cellctl.drivers.lighting import LightingSettings
from cellctl.drivers.lighting.gardasoft import check_limits
from cellctl.sim.world import world_from

NOMINAL_INTENSITY_PCT = 80.0
SWITCH_S = 0.002  # controller round trip at 115200 baud
CONNECT_S = 0.05


class SimLighting:
    name = "sim lighting"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._world = world_from(context, url)
        self._settings = LightingSettings()
        self._connected = False
        self._closed = False
        self._lit = False

    def health(self) -> dict[str, Any]:
        return {"connected": self._connected, "lit": self._lit, "reconnects": 0, "identity": "simulated"}

    async def connect(self, timeout_s: float) -> None:
        self._usable(connected=False)
        await asyncio.sleep(min(CONNECT_S * self._world.time_scale, timeout_s))
        self._connected = True

    async def configure(self, settings: LightingSettings, timeout_s: float) -> None:
        self._usable(connected=False)  # as the Gardasoft driver: remembered, sent by on()
        check_limits(settings)  # what the controller would refuse, refused here too
        self._settings = settings

    async def on(self, timeout_s: float) -> None:
        self._usable()
        s = self._settings
        check_limits(s)
        if s.warmup_s >= timeout_s:
            raise DriverTimeout(f"{self.name}: warm-up of {s.warmup_s:g} s does not fit in {timeout_s:g} s")
        await self._world.clock.sleep(SWITCH_S + s.warmup_s)
        dead = self._world.faults.light_dead
        self._world.light_gain = 0.0 if dead else s.intensity_pct / NOMINAL_INTENSITY_PCT
        self._lit = True

    async def off(self, timeout_s: float) -> None:
        self._usable()
        await self._world.clock.sleep(min(SWITCH_S, timeout_s))
        self._world.light_gain = 0.0
        self._lit = False

    async def close(self) -> None:
        if not self._closed:
            self._world.light_gain = 0.0
            self._closed, self._connected, self._lit = True, False, False

    def _usable(self, connected: bool = True) -> None:
        if self._closed:
            raise DriverIOError(f"{self.name}: closed")
        if connected and not self._connected:
            raise DriverIOError(f"{self.name}: not connected (call connect() first)")
