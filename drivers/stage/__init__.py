"""The turntable: a stepper drive with an encoder that also clocks the line-scan camera.

Backends: ``sim://`` (in-process, cellctl.sim) and ``serial://`` / ``socket://`` (Applied
Motion SCL drive, drivers/stage/scl.py).
"""

from typing import Any, Protocol

from pydantic import Field

from cellctl.drivers.errors import DriverIOError
from cellctl.drivers.registry import BackendRegistry
from cellctl.drivers.settings import SettingsModel


class MotionSettings(SettingsModel):
    """Turntable motion for one part type (SCL: VE, AC/DE, EG)."""

    speed_rps: float = Field(default=1.0, gt=0.0, le=5.0, description="cruise speed [VE], rev/s")
    accel_rps2: float = Field(default=20.0, gt=0.0, le=200.0, description="accel/decel [AC/DE], rev/s^2")
    settle_ms: float = Field(default=5.0, ge=0.0, le=1000.0, description="wait after in-position")


class Stage(Protocol):
    """Rotary stage moved in relative steps; position in degrees.

    Every method with ``timeout_s`` returns or raises within it (plus scheduling slack): the
    driver owns the deadline. Errors: DriverTimeout (a stalled or silent drive, which is
    stopped), StageAlarm (a DriverIOError naming the drive's alarms), DriverIOError (link
    trouble, any call before connect() or after close()), DriverInitError (refused settings).
    """

    async def connect(self, timeout_s: float) -> None:
        """Open the drive, enable it; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: MotionSettings, timeout_s: float) -> None:
        """Apply speed and acceleration; DriverInitError if the drive refuses them."""

    async def home(self, timeout_s: float) -> None:
        """Find the index and set the position to 0 degrees."""

    async def move_by(self, degrees: float, timeout_s: float) -> None:
        """Turn by ``degrees`` and return once in position and not moving."""

    async def close(self) -> None:
        """Disable the drive and release the port; never raises, safe twice, bounded by the
        driver's CLOSE_TIMEOUT_S."""

    def health(self) -> dict[str, Any]:
        """Figures and states, no I/O: connected, reconnects, identity."""


class StageAlarm(DriverIOError):
    """The drive stopped with alarms; ``alarms`` names them (``bits`` as the drive reports)."""

    def __init__(self, source: str, bits: int, alarms: list[str]) -> None:
        self.bits = bits
        self.alarms = alarms
        super().__init__(f"{source}: drive alarm: {', '.join(alarms)} (AL={bits:04X})")


STAGES = BackendRegistry(
    "stage",
    {
        "sim": "cellctl.sim.stage:SimStage",
        "serial": "cellctl.drivers.stage.scl:SclStage",
        "socket": "cellctl.drivers.stage.scl:SclStage",
    },
    options={
        "sim": "cellctl.sim.options:SimOptions",
        "serial": "cellctl.drivers.stage.scl:SclOptions",
        "socket": "cellctl.drivers.stage.scl:SclOptions",
    },
)

__all__ = ["STAGES", "MotionSettings", "Stage", "StageAlarm"]
