"""UV/LED lighting controller (Gardasoft RT-series driving the EFFI-Flex 365 nm bar).

Backends: ``sim://`` (in-process, cellctl.sim) and ``serial://`` / ``socket://`` (Gardasoft
RT-series text protocol, drivers/lighting/gardasoft.py).
"""

from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from cellctl.drivers.lighting._limits import (
    CONTINUOUS_MAX_PCT,
    LIMITS_TEXT,
    STROBE_LIMITS,
    overdrive_problem,
    strobe_max_pct,
)
from cellctl.drivers.registry import BackendRegistry
from cellctl.drivers.settings import SettingsModel


class LightingSettings(SettingsModel):
    """One channel of the lighting controller (Gardasoft RS / RT commands)."""

    channel: int = Field(default=1, ge=1, le=4, description="controller output channel")
    mode: Literal["continuous", "strobe"] = Field(default="continuous")
    intensity_pct: float = Field(default=80.0, gt=0.0, le=300.0, description="brightness, %")
    pulse_width_ms: float = Field(default=10.0, gt=0.0, le=999.0, description="strobe width")
    pulse_delay_ms: float = Field(default=0.0, ge=0.0, le=999.0, description="strobe delay")
    warmup_s: float = Field(default=0.0, ge=0.0, le=600.0, description="wait after switching on")

    @model_validator(mode="after")
    def verify_overdrive(self) -> "LightingSettings":
        # the controller's limits (drivers/lighting/_limits.py), the same the driver and the
        # emulator apply: what `cellctl check` passes, the controller accepts
        problem = overdrive_problem(self.mode, self.intensity_pct, self.pulse_width_ms)
        if problem is not None:
            raise ValueError(problem)
        return self


class Lighting(Protocol):
    """A lighting channel that is switched on for the revolution and off after.

    Every method with ``timeout_s`` returns or raises within it (plus scheduling slack): the
    driver owns the deadline. Errors: DriverInitError (settings beyond the controller's
    limits, refused at configure()), DriverTimeout, DriverIOError (link or controller trouble,
    any call before connect() or after close()).
    """

    async def connect(self, timeout_s: float) -> None:
        """Open the controller; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: LightingSettings, timeout_s: float) -> None:
        """Take mode, brightness and pulse timing; DriverInitError beyond the limits."""

    async def on(self, timeout_s: float) -> None:
        """Switch the channel on (continuous) or arm it (strobe)."""

    async def off(self, timeout_s: float) -> None:
        """Switch the channel off."""

    async def close(self) -> None:
        """Switch off (best effort) and release the port; never raises, safe twice, bounded
        by the driver's CLOSE_TIMEOUT_S even if the controller is silent or gone."""

    def health(self) -> dict[str, Any]:
        """Figures and states, no I/O: connected, lit, reconnects, identity."""


LIGHTS = BackendRegistry(
    "lighting",
    {
        "sim": "cellctl.sim.lighting:SimLighting",
        "serial": "cellctl.drivers.lighting.gardasoft:GardasoftLighting",
        "socket": "cellctl.drivers.lighting.gardasoft:GardasoftLighting",
    },
    options={
        "sim": "cellctl.sim.options:SimOptions",
        "serial": "cellctl.drivers.lighting.gardasoft:GardasoftOptions",
        "socket": "cellctl.drivers.lighting.gardasoft:GardasoftOptions",
    },
)

__all__ = [
    "CONTINUOUS_MAX_PCT",
    "LIGHTS",
    "LIMITS_TEXT",
    "STROBE_LIMITS",
    "Lighting",
    "LightingSettings",
    "overdrive_problem",
    "strobe_max_pct",
]
