from __future__ import annotations

from typing import Protocol

from cellctl.drivers.camera._frame import Frame
from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings


class FrameCamera(Protocol):
    """Area camera in trigger mode: one frame per trigger."""

    async def connect(self, timeout_s: float) -> None:
        """Open the device; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: FrameCameraSettings) -> None:
        """Apply settings; transport parameters lock once acquisition starts."""

    async def start(self) -> None:
        """Start acquisition, armed for triggers; stays running for the process."""

    async def trigger(self) -> None:
        """Fire a software trigger (a hardware line needs no call)."""

    async def grab(self, timeout_s: float) -> Frame:
        """Return the next frame, copied; raise DriverTimeout when none arrives."""

    async def close(self) -> None:
        """Stop acquisition and release the device; safe to call twice."""


class LineScanCamera(Protocol):
    """Line-scan camera: one line per encoder step, one frame (strip) per revolution."""

    async def connect(self, timeout_s: float) -> None:
        """Open the device; raise DriverInitError/DriverTimeout."""

    async def configure(self, settings: LineScanSettings) -> None:
        """Apply settings (Height = lines per revolution, encoder scaling)."""

    async def start(self) -> None:
        """Start acquisition; lines are taken as the encoder turns."""

    async def begin_strip(self) -> None:
        """Drop any partial strip: the next line starts a new revolution (FrameStart)."""

    async def grab(self, timeout_s: float) -> Frame:
        """Return the next complete strip; raise DriverTimeout if the revolution stalls."""

    async def close(self) -> None:
        """Stop acquisition and release the device; safe to call twice."""
