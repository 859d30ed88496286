"""Building the cell's devices from the config, connecting, starting and closing them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog

from cellctl.config import CellConfig, ResolvedProfile, Timeouts
from cellctl.drivers import CellError
from cellctl.drivers.camera import FRAME_CAMERAS, LINE_CAMERAS, FrameCamera, LineScanCamera
from cellctl.drivers.lighting import LIGHTS, Lighting
from cellctl.drivers.stage import STAGES, Stage

log = structlog.get_logger("cellctl.devices")


class NotConnected(CellError):
    """One or more devices failed to connect; the message names each with its error."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {err}" for name, err in errors.items()))


@dataclass(frozen=True)
class CellDevices:
    frame_camera: FrameCamera
    line_camera: LineScanCamera
    stage: Stage
    lighting: Lighting

    @classmethod
    def build(cls, config: CellConfig, context: dict[str, Any]) -> CellDevices:
        """Construct (no I/O) the backend each device URL names; ``context`` is shared by
        the backends of this cell (the simulator keeps its world there)."""
        d = config.devices
        return cls(
            frame_camera=FRAME_CAMERAS.create(d.frame_camera.url, context=context),
            line_camera=LINE_CAMERAS.create(d.line_camera.url, context=context),
            stage=STAGES.create(d.stage.url, context=context),
            lighting=LIGHTS.create(d.lighting.url, context=context),
        )

    def named(self) -> dict[str, Any]:
        return {
            "frame_camera": self.frame_camera,
            "line_camera": self.line_camera,
            "stage": self.stage,
            "lighting": self.lighting,
        }

    async def connect(self, timeout_s: float) -> None:
        """All devices in parallel; each driver keeps the deadline. Errors name every device."""
        errors: dict[str, BaseException] = {}

        async def one(name: str, device: Any) -> None:
            try:
                await device.connect(timeout_s)
            except (CellError, OSError) as exc:
                errors[name] = exc

        async with asyncio.TaskGroup() as tg:
            for name, device in self.named().items():
                tg.create_task(one(name, device))
        if errors:
            raise NotConnected(errors)

    async def start(self, timeouts: Timeouts) -> None:
        """Light off first (a previous run may have died with it on), cameras armed, table homed."""
        await self.lighting.off(timeouts.light_s)
        await self.frame_camera.start(timeouts.connect_s)
        await self.line_camera.start(timeouts.connect_s)
        await self.stage.home(timeouts.home_s)

    async def configure(self, rp: ResolvedProfile, timeout_s: float) -> None:
        p = rp.profile
        await self.frame_camera.configure(p.frame_camera, timeout_s)
        await self.line_camera.configure(p.line_scan, timeout_s)
        await self.stage.configure(p.motion, timeout_s)
        await self.lighting.configure(p.lighting, timeout_s)

    async def close(self) -> None:
        # lights off first: a UV bar left on is the one hazard here. Each close is bounded by
        # its driver and never raises by contract; a broken driver still must not keep the
        # others open.
        for name, device in (
            ("lighting", self.lighting),
            ("stage", self.stage),
            ("line_camera", self.line_camera),
            ("frame_camera", self.frame_camera),
        ):
            try:
                await device.close()
            except Exception as exc:  # noqa: BLE001
                log.error("device.close_failed", device=name, error=str(exc))

    def health(self) -> dict[str, Any]:
        return {name: device.health() for name, device in self.named().items()}
