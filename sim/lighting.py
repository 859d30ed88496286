"""Simulated lighting controller: switching the channel sets the UV irradiance at the part.

URL: ``sim://[?seed=S&time_scale=X]``. Not modelled: LED warm-up drift, strobe timing.
"""

from __future__ import annotations

from typing import Any

from cellctl.drivers import DeviceUrl
from cellctl.drivers.lighting import LightingSettings
from cellctl.sim.world import world_from

NOMINAL_INTENSITY_PCT = 80.0
SWITCH_S = 0.002  # controller round trip at 115200 baud


class SimLighting:
    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._world = world_from(context, url)
        self._settings = LightingSettings()

    async def connect(self, timeout_s: float) -> None:
        await self._world.clock.sleep(0.05)

    async def configure(self, settings: LightingSettings) -> None:
        self._settings = settings

    async def on(self, timeout_s: float) -> None:
        await self._world.clock.sleep(SWITCH_S + self._settings.warmup_s)
        dead = self._world.faults.light_dead
        self._world.light_gain = 0.0 if dead else self._settings.intensity_pct / NOMINAL_INTENSITY_PCT

    async def off(self, timeout_s: float) -> None:
        await self._world.clock.sleep(SWITCH_S)
        self._world.light_gain = 0.0

    async def close(self) -> None:
        self._world.light_gain = 0.0
