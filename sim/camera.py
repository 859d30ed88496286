"""Simulated GenICam cameras, in process, rendering the world's fixture when triggered.

URL: ``sim://[?seed=S&time_scale=X]`` (options only used when no world is in the context).

Real semantics kept, the same as the GenTL driver's (tests/contract): a frame per software
trigger, none before start(); with trigger_source Line1 trigger() is a no-op and, since
nothing drives the line in the simulation, no frame comes; a line per encoder step and a
strip per revolution (line scan, encoder output mode Position: no lines while turning
backwards); begin_strip() drops the partial strip and every strip queued; configure() while
acquiring applies the settings (as stop/apply/restart does) and drops queued frames;
exposure and GigE transfer time (about 120 MB/s); pixels delivered in the configured format.

Faults (``world.faults``): a dropped frame or strip (``frame_timeouts``/``strip_timeouts``)
is remembered in order, so the grab that would have returned it raises DriverTimeout after
its timeout in simulated time (at once at time scale 0), never racing a wall clock;
``frame_disconnects`` makes triggers fail with DriverIOError, ``incomplete_frames`` delivers
short buffers (complete=False), ``configure_refusals`` refuses configure().

Not modelled: exposure overlap limits, packet resend, dropped triggers at excess line rate,
the camera's own rebuild after a loss (``rebuilds`` stays 0).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from cellctl.drivers import DeviceUrl, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.camera import Frame, FrameCameraSettings, LineScanSettings
from cellctl.sim.scene import DARK_LEVEL, FRAME_SHAPE
from cellctl.sim.sensor import encode
from cellctl.sim.world import world_from

GIGE_BYTES_PER_S = 120e6
NOMINAL_FRAME_EXPOSURE_US = 8000.0
NOMINAL_LINE_EXPOSURE_US = 20.0
CONNECT_S = 0.05  # opening the device: GenTL discovery and XML download, scaled by the clock


def _bytes_per_pixel(pixel_format: str) -> int:
    return 3 if pixel_format == "RGB8" else 1


def revalidated(settings: BaseModel, name: str) -> None:
    """Refuse settings that skipped validation (model_construct) as a device would refuse them."""
    try:
        type(settings).model_validate(settings.model_dump())
    except ValidationError as exc:
        raise DriverInitError(f"{name}: settings refused: {exc.errors()[0]['msg']}") from exc


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _SimStream:
    """What both simulated cameras share: each expected frame is a slot in order, filled by
    a render task, or empty (None) if a fault dropped it."""

    name = "camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._world = world_from(context, url)
        self._slots: deque[asyncio.Future[Frame | None]] = deque()
        self._claimed: set[asyncio.Future[Frame | None]] = set()  # slots a grab is waiting on
        self._slot_added = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()
        self._frame_id = 0
        self.state = "closed"
        self._closed = False
        self.frames = 0
        self.missed = 0

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "frames": self.frames,
            "missed": self.missed,
            "rebuilds": 0,
            "identity": "simulated",
        }

    async def connect(self, timeout_s: float) -> None:
        self._usable()
        await asyncio.sleep(min(CONNECT_S * self._world.time_scale, timeout_s))
        self.state = "connected"

    async def start(self, timeout_s: float) -> None:
        self._usable(connected=True)
        self.state = "acquiring"

    def _usable(self, connected: bool = False, acquiring: str | None = None) -> None:
        if self._closed:
            raise DriverIOError(f"{self.name}: closed")
        if connected and self.state == "closed":
            raise DriverIOError(f"{self.name}: not connected (call connect() first)")
        if acquiring is not None and self.state != "acquiring":
            raise DriverIOError(f"{self.name}: cannot {acquiring}, camera is {self.state} (call start() first)")

    def _expect(self) -> asyncio.Future[Frame | None]:
        slot: asyncio.Future[Frame | None] = asyncio.get_running_loop().create_future()
        self._slots.append(slot)
        self._slot_added.set()
        return slot

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _fill(self, slot: asyncio.Future[Frame | None], frame: Frame) -> None:
        if not slot.done():
            self.frames += 1
            slot.set_result(frame)

    def _flush(self) -> None:
        """Drop every frame expected so far: rendered, being rendered, or lost."""
        for task in self._pending:
            task.cancel()
        for slot in (*self._slots, *self._claimed):
            slot.cancel()
        self._slots.clear()

    def _unclaim(self, slot: asyncio.Future[Frame | None]) -> None:
        """A grab that gave up hands its frame on to the next grab."""
        self._claimed.discard(slot)
        if not slot.done():
            self._slots.appendleft(slot)

    async def grab(self, timeout_s: float) -> Frame:
        self._usable(acquiring="grab")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                while not self._slots:
                    self._slot_added.clear()
                    await asyncio.wait_for(self._slot_added.wait(), deadline - loop.time())
                # claimed: a concurrent grab waits for the next frame, never for this one
                slot = self._slots.popleft()
                self._claimed.add(slot)
                try:
                    frame = await asyncio.wait_for(asyncio.shield(slot), max(deadline - loop.time(), 0.0))
                    break
                except asyncio.CancelledError:
                    if not slot.cancelled() or _cancelling():
                        self._unclaim(slot)
                        raise  # we are cancelled, not the slot
                    # flushed by begin_strip/configure while we waited: wait for the next
                except TimeoutError:
                    self._unclaim(slot)
                    raise
                finally:
                    self._claimed.discard(slot)
        except TimeoutError:
            raise DriverTimeout(f"{self.name}: no complete frame within {timeout_s:g} s") from None
        if frame is None:
            # lost on the way: the host only learns when its timeout runs out, in sim time
            self.missed += 1
            await asyncio.sleep(min(timeout_s * self._world.time_scale, max(deadline - loop.time(), 0.0)))
            raise DriverTimeout(f"{self.name}: no complete frame within {timeout_s:g} s (lost)")
        return frame

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.state = "closed"
        pending = list(self._pending)
        self._flush()
        await asyncio.gather(*pending, return_exceptions=True)


class SimFrameCamera(_SimStream):
    """The Genie Nano, simulated: renders the head at the turntable angle on each trigger."""

    name = "frame camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        super().__init__(url, context)
        self._settings = FrameCameraSettings()

    async def configure(self, settings: FrameCameraSettings, timeout_s: float) -> None:
        self._usable(connected=True)
        faults = self._world.faults
        if faults.configure_refusals > 0:
            faults.configure_refusals -= 1
            raise DriverInitError(f"{self.name}: configuration refused (injected fault)")
        revalidated(settings, self.name)
        if self.state == "acquiring":
            self._flush()  # stop, apply, restart: what was queued is gone
        self._settings = settings

    async def trigger(self, timeout_s: float) -> None:
        self._usable(acquiring="trigger")
        s, faults = self._settings, self._world.faults
        if s.trigger_source != "Software":
            return  # the hardware line triggers; nothing drives it in the simulation
        if faults.frame_disconnects > 0:
            faults.frame_disconnects -= 1
            raise DriverIOError(f"{self.name}: device lost")
        # The scene is fixed at the trigger (exposure start); rendering and transfer follow.
        part, angle, gain = self._world.fixture, self._world.angle_deg, self._gain()
        self._frame_id += 1
        if faults.frame_timeouts > 0:
            faults.frame_timeouts -= 1
            self._expect().set_result(None)  # an incomplete buffer dropped by the producer
            return
        short = faults.incomplete_frames > 0
        faults.incomplete_frames -= short
        self._spawn(self._expose(self._expect(), s, part, angle, gain, self._frame_id, short))

    async def _expose(
        self,
        slot: asyncio.Future[Frame | None],
        s: FrameCameraSettings,
        part: Any,
        angle: float,
        gain: float,
        frame_id: int,
        short: bool,
    ) -> None:
        await self._world.clock.sleep(s.exposure_us * 1e-6)
        data = await asyncio.to_thread(self._render, s, part, angle, gain)
        await self._world.clock.sleep(data.nbytes / GIGE_BYTES_PER_S)
        if short:  # packets lost for good: the buffer ends early, as GenTL hands it on
            self._fill(
                slot,
                Frame(
                    data.reshape(-1)[: data.size // 2].copy(),
                    s.pixel_format,
                    frame_id,
                    time.monotonic(),
                    complete=False,
                ),
            )
        else:
            self._fill(slot, Frame(data, s.pixel_format, frame_id, time.monotonic()))

    def _render(self, s: FrameCameraSettings, part: Any, angle: float, gain: float) -> np.ndarray:
        if part is None:
            image = np.full(FRAME_SHAPE, DARK_LEVEL, np.float32)  # empty fixture
        else:
            image = self._world.renderer.head_view(part, angle, gain).image
        return encode(image[: s.height_px, : s.width_px], s.pixel_format)

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

    async def configure(self, settings: LineScanSettings, timeout_s: float) -> None:
        self._usable(connected=True)
        revalidated(settings, self.name)
        if self.state == "acquiring":
            self._flush()
        self._settings = settings
        self._edges = 0

    async def start(self, timeout_s: float) -> None:
        await super().start(timeout_s)
        self._edges = 0

    async def begin_strip(self, timeout_s: float) -> None:
        self._usable(acquiring="begin a strip")
        self._flush()
        self._edges = 0

    def _on_encoder(self, delta: int) -> None:
        if self.state != "acquiring" or delta <= 0:
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
                self._expect().set_result(None)
                return
            part, gain = self._scene or (None, 0.0)
            self._spawn(self._deliver(self._expect(), s, part, gain, self._frame_id))

    async def _deliver(
        self, slot: asyncio.Future[Frame | None], s: LineScanSettings, part: Any, gain: float, frame_id: int
    ) -> None:
        data = await asyncio.to_thread(self._render, s, part, gain)
        # lines stream while the part turns; only the last block is still on the wire
        await self._world.clock.sleep(s.line_width_px * 64 * _bytes_per_pixel(s.pixel_format) / GIGE_BYTES_PER_S)
        self._fill(slot, Frame(data, s.pixel_format, frame_id, time.monotonic()))

    def _render(self, s: LineScanSettings, part: Any, gain: float) -> np.ndarray:
        if part is None:
            image = np.full((s.lines_per_revolution, s.line_width_px), DARK_LEVEL, np.float32)
        else:
            image = self._world.renderer.strip(part, s.lines_per_revolution, s.line_width_px, gain).image
        return encode(image, s.pixel_format)

    def _gain(self) -> float:
        s = self._settings
        return self._world.light_gain * s.exposure_us / NOMINAL_LINE_EXPOSURE_US * 10 ** (s.gain_db / 20)
