"""Simulated GenICam cameras, in process, rendering the world's fixture when triggered.

URL: ``sim://[?seed=S&time_scale=X]`` (options only used when no world is in the context).

Real semantics kept: a frame per trigger (frame camera), a line per encoder step and a strip
per revolution (line scan, encoder output mode Position: no lines while turning backwards);
exposure and GigE transfer time (about 120 MB/s); pixels delivered in the configured format.
Not modelled: exposure overlap limits, packet resend, dropped triggers at excess line rate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from cellctl.drivers import DeviceUrl, DriverInitError, DriverTimeout
from cellctl.drivers.camera import Frame, FrameCameraSettings, LineScanSettings
from cellctl.sim.scene import DARK_LEVEL, FRAME_SHAPE
from cellctl.sim.sensor import encode
from cellctl.sim.world import world_from

GIGE_BYTES_PER_S = 120e6
NOMINAL_FRAME_EXPOSURE_US = 8000.0
NOMINAL_LINE_EXPOSURE_US = 20.0


def _bytes_per_pixel(pixel_format: str) -> int:
    return 3 if pixel_format == "RGB8" else 1


class _SimStream:
    """What both simulated cameras share: frames rendered in tasks, delivered through a queue."""

    name = "camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._world = world_from(context, url)
        self._frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._pending: set[asyncio.Task[None]] = set()
        self._frame_id = 0
        self._started = False

    async def connect(self, timeout_s: float) -> None:
        await self._world.clock.sleep(0.05)

    async def start(self) -> None:
        self._started = True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def grab(self, timeout_s: float) -> Frame:
        try:
            return await asyncio.wait_for(self._frames.get(), timeout_s)
        except TimeoutError as exc:
            raise DriverTimeout(f"{self.name}: no complete frame within {timeout_s:g} s") from exc

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._started = False


class SimFrameCamera(_SimStream):
    """The Genie Nano, simulated: renders the head at the turntable angle on each trigger."""

    name = "frame camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        super().__init__(url, context)
        self._settings = FrameCameraSettings()

    async def configure(self, settings: FrameCameraSettings) -> None:
        if self._started and settings.pixel_format != self._settings.pixel_format:
            raise DriverInitError("frame camera: PixelFormat is locked while acquiring (TLParamsLocked)")
        self._settings = settings

    async def trigger(self) -> None:
        if not self._started:
            raise DriverInitError("frame camera: trigger before start")
        # The scene is fixed at the trigger (exposure start); rendering and transfer follow.
        part, angle, gain = self._world.fixture, self._world.angle_deg, self._gain()
        self._frame_id += 1
        if self._world.faults.frame_timeouts > 0:
            self._world.faults.frame_timeouts -= 1
            return  # an incomplete buffer is dropped by the producer: nothing arrives
        self._spawn(self._expose(part, angle, gain, self._frame_id))

    async def _expose(self, part: Any, angle: float, gain: float, frame_id: int) -> None:
        s = self._settings
        await self._world.clock.sleep(s.exposure_us * 1e-6)
        data = await asyncio.to_thread(self._render, part, angle, gain)
        await self._world.clock.sleep(data.nbytes / GIGE_BYTES_PER_S)
        self._frames.put_nowait(Frame(data, s.pixel_format, frame_id, time.monotonic()))

    def _render(self, part: Any, angle: float, gain: float) -> np.ndarray:
        if part is None:
            image = np.full(FRAME_SHAPE, DARK_LEVEL, np.float32)  # empty fixture
        else:
            image = self._world.renderer.head_view(part, angle, gain).image
        image = image[: self._settings.height_px, : self._settings.width_px]
        return encode(image, self._settings.pixel_format)

    def _gain(self) -> float:
        s = self._settings
        return self._world.light_gain * s.exposure_us / NOMINAL_FRAME_EXPOSURE_US * 10 ** (s.gain_db / 20)


class SimLineScanCamera(_SimStream):
    """The Linea, simulated: counts encoder lines; a full revolution renders one strip."""

    name = "line-scan camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        super().__init__(url, context)
        self._settings = LineScanSettings()
        self._edges = 0  # encoder edges since the strip began
        self._scene: tuple[Any, float] | None = None
        self._world.on_encoder(self._on_encoder)

    async def configure(self, settings: LineScanSettings) -> None:
        self._settings = settings
        self._edges = 0

    async def start(self) -> None:
        self._started = True
        self._edges = 0

    async def begin_strip(self) -> None:
        self._edges = 0

    def _on_encoder(self, delta: int) -> None:
        if not self._started or delta <= 0:
            return  # Position mode: no lines while turning backwards
        s = self._settings
        if self._edges == 0:
            # The scene is taken at the first line; the part does not change during a turn.
            self._scene = (self._world.fixture, self._gain())
        self._edges += delta
        lines = self._edges * s.encoder_multiplier // s.encoder_divider
        if lines >= s.lines_per_revolution:
            self._edges = 0
            self._frame_id += 1
            if self._world.faults.strip_timeouts > 0:
                self._world.faults.strip_timeouts -= 1
                return
            part, gain = self._scene or (None, 0.0)
            self._spawn(self._deliver(part, gain, self._frame_id))

    async def _deliver(self, part: Any, gain: float, frame_id: int) -> None:
        s = self._settings
        data = await asyncio.to_thread(self._render, part, gain)
        # lines stream while the part turns; only the last block is still on the wire
        await self._world.clock.sleep(s.line_width_px * 64 * _bytes_per_pixel(s.pixel_format) / GIGE_BYTES_PER_S)
        self._frames.put_nowait(Frame(data, s.pixel_format, frame_id, time.monotonic()))

    def _render(self, part: Any, gain: float) -> np.ndarray:
        s = self._settings
        if part is None:
            image = np.full((s.lines_per_revolution, s.line_width_px), DARK_LEVEL, np.float32)
        else:
            image = self._world.renderer.strip(part, s.lines_per_revolution, s.line_width_px, gain).image
        return encode(image, s.pixel_format)

    def _gain(self) -> float:
        s = self._settings
        return self._world.light_gain * s.exposure_us / NOMINAL_LINE_EXPOSURE_US * 10 ** (s.gain_db / 20)
