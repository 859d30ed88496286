"""The camera Protocols. Every method with ``timeout_s`` returns or raises within it (plus
scheduling slack): the driver owns the deadline, callers add no ``wait_for`` of their own.
Errors are CellError subclasses only: DriverTimeout (deadline missed), DriverIOError (link or
device trouble, also any call after close()), DriverInitError (configuration refused)."""

from __future__ import annotations

from typing import Any, Protocol

from cellctl.drivers.camera._frame import Frame
from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings


class FrameCamera(Protocol):
    """Area camera in trigger mode: one frame per trigger."""

    async def connect(self, timeout_s: float) -> None:
        """Open the device; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: FrameCameraSettings, timeout_s: float) -> None:
        """Apply settings; while acquiring, transport parameters are applied by stopping,
        applying and restarting (frames queued before are dropped). DriverInitError if refused."""

    async def start(self, timeout_s: float) -> None:
        """Start acquisition, armed for triggers; no frame arrives before this."""

    async def trigger(self, timeout_s: float) -> None:
        """Fire a software trigger: exactly one frame follows. With trigger_source Line1 the
        hardware line triggers and this is a no-op. DriverIOError before start()."""

    async def grab(self, timeout_s: float) -> Frame:
        """Return the next frame, copied; DriverTimeout when none arrives (none was triggered,
        or it was lost)."""

    async def close(self) -> None:
        """Stop acquisition and release the device; never raises, safe twice, bounded by the
        driver's CLOSE_TIMEOUT_S even if the device is gone."""

    def health(self) -> dict[str, Any]:
        """Figures and states, no I/O: state, frames, missed, rebuilds."""


class LineScanCamera(Protocol):
    """Line-scan camera: one line per encoder step, one frame (strip) per revolution."""

    async def connect(self, timeout_s: float) -> None:
        """Open the device; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: LineScanSettings, timeout_s: float) -> None:
        """Apply settings (Height = lines per revolution, encoder scaling, FrameStart)."""

    async def start(self, timeout_s: float) -> None:
        """Start acquisition; lines are taken as the encoder turns."""

    async def begin_strip(self, timeout_s: float) -> None:
        """The next strip grab() returns starts at the turntable's current position: a
        partial strip and any strips queued are dropped (FrameStart by software, or the
        index pulse when the profile has an index input)."""

    async def grab(self, timeout_s: float) -> Frame:
        """Return the next complete strip; DriverTimeout if the revolution stalls."""

    async def close(self) -> None:
        """Stop acquisition and release the device; never raises, safe twice, bounded by the
        driver's CLOSE_TIMEOUT_S even if the device is gone."""

    def health(self) -> dict[str, Any]:
        """Figures and states, no I/O: state, frames, missed, rebuilds."""
