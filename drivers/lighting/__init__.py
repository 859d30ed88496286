"""UV/LED lighting controller (Gardasoft RT-series driving the EFFI-Flex 365 nm bar).

Backends: ``sim://`` (in-process, cellctl.sim) and ``serial://`` / ``socket://`` (Gardasoft
RT-series text protocol, drivers/lighting/gardasoft.py).
"""

from typing import Literal, Protocol

from pydantic import Field, model_validator

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
        # Overdrive above 100 % is only safe for short pulses: the controller would clip it,
        # the LEDs would age. Continuous light is limited to 100 %.
        if self.intensity_pct > 100.0 and self.mode == "continuous":
            raise ValueError("intensity_pct above 100 needs mode: strobe")
        if self.intensity_pct > 200.0 and self.pulse_width_ms > 10.0:
            raise ValueError("intensity_pct 201-300 allows pulse_width_ms of at most 10")
        return self


class Lighting(Protocol):
    """A lighting channel that is switched on for the revolution and off after."""

    async def connect(self, timeout_s: float) -> None:
        """Open the controller; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: LightingSettings) -> None:
        """Send mode, brightness and pulse timing."""

    async def on(self, timeout_s: float) -> None:
        """Switch the channel on (continuous) or arm it (strobe)."""

    async def off(self, timeout_s: float) -> None:
        """Switch the channel off."""

    async def close(self) -> None:
        """Switch off and release the port; safe to call twice."""


LIGHTS = BackendRegistry("lighting", {
    "sim": "cellctl.sim.lighting:SimLighting",
    "serial": "cellctl.drivers.lighting.gardasoft:GardasoftLighting",
    "socket": "cellctl.drivers.lighting.gardasoft:GardasoftLighting",
})

__all__ = ["LIGHTS", "Lighting", "LightingSettings"]
