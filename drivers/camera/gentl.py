"""GenICam cameras through harvesters and any vendor GenTL producer (.cti).

URL: ``gentl:///path/to/producer.cti?serial=S1234`` (or ``user_name=head-cam``)
Options:
  serial / user_name   the device to open (exactly one device must match)
  num_buffers          acquisition buffers, default 4, raised to the producer's minimum
                       (holding them all starves the stream)
  strict               default true: a feature the profile sets must exist on the device;
                       false skips absent features with a warning (generic or test producers)
  poll_s               fetch poll period of the acquisition thread, default 0.1
  rebuild_s            longest wait between attempts to rebuild a lost camera, default 10

One Harvester per producer file and cell (shared through the device context), one acquirer
per camera kept for the life of the process (create/destroy cycles leak in harvesters), and
every harvesters call on the producer's own thread. Frames are copied out of the buffer
before it is queued back (the producer overwrites it) and interpreted by the pixel format
the buffer reports. Incomplete buffers are dropped by harvesters and show as timeouts. There
is no disconnect event: a supervisor rebuilds the acquirer after a fetch error or a missed
frame, backing off up to ``rebuild_s``; ``health()`` reports where the camera is.

Deadlines: every call with ``timeout_s`` ends within it; a producer call still running then
is abandoned to the producer thread (the next call queues behind it), and library errors
become DriverIOError. close() is bounded by ``CLOSE_TIMEOUT_S`` even if the device is gone.
A grab that times out while a software trigger is unanswered (or, free-running or on a
hardware trigger, any grab that times out) counts as missed and has the camera rebuilt; a
grab with nothing triggered is only a DriverTimeout.

Strips (line scan): without an index input, FrameStart is set to Software and begin_strip()
flushes queued strips and fires it, so the strip starts where the turntable is; with an index
input, or a producer without a software FrameStart, begin_strip() only flushes. A strip being
transferred at that moment (started before) can still arrive: the caller skips it by its
timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import structlog
from pydantic import Field, model_validator

from cellctl.drivers.camera._features import apply_plan, frame_camera_plan, line_scan_plan, software_frame_start
from cellctl.drivers.camera._frame import Frame
from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings
from cellctl.drivers.errors import CellError, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.registry import DeviceUrl
from cellctl.drivers.settings import SettingsModel

log = structlog.get_logger("cellctl.drivers.camera.gentl")

CLOSE_TIMEOUT_S = 3.0  # close(): stop, destroy, unload; a GigE camera that is gone takes ~1 s
RELEASE_MIN_S = 0.5  # unloading the producer gets at least this, even after a slow close

# GenTL DEVICE_ACCESS_STATUS
_ACCESS = {
    0: "unknown",
    1: "readwrite",
    2: "readonly",
    3: "noaccess",
    4: "busy",
    5: "open-readwrite",
    6: "open-readonly",
}
_PLANES = {"Mono8": 1, "BayerRG8": 1, "RGB8": 3, "RGBa8": 4, "RGBA8": 4}


class GenTLOptions(SettingsModel):
    serial: str | None = None
    user_name: str | None = None
    num_buffers: int = Field(default=4, ge=2, le=64)
    strict: bool = True
    poll_s: float = Field(default=0.1, gt=0.0, le=5.0)
    rebuild_s: float = Field(default=10.0, gt=0.0, le=600.0)

    @model_validator(mode="after")
    def verify_one_selector(self) -> GenTLOptions:
        if (self.serial is None) == (self.user_name is None):
            raise ValueError("give exactly one of serial=... or user_name=...")
        return self


class ProducerHost:
    """A loaded GenTL producer: its Harvester and the one thread that talks to it."""

    def __init__(self, cti: str) -> None:
        self.cti = cti
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gentl")
        self.harvester: Any = None
        self.users = 0

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def load(self) -> None:
        if self.harvester is None:
            from harvesters.core import Harvester

            harvester = Harvester()
            harvester.add_file(self.cti, check_existence=True)
            harvester.update()
            self.harvester = harvester

    def devices(self) -> list[dict[str, Any]]:
        self.load()
        fields = {
            "vendor": "vendor",
            "model": "model",
            "serial": "serial_number",
            "user_name": "user_defined_name",
            "access_status": "access_status",
            "id": "id_",
        }
        found = [{key: _info(d, attr) for key, attr in fields.items()} for d in self.harvester.device_info_list]
        for device in found:
            device["access_status"] = _ACCESS.get(device["access_status"], device["access_status"])
        return found

    def reset(self) -> None:
        if self.harvester is not None:
            self.harvester.reset()
            self.harvester = None

    async def release(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """One user less; the last one unloads the producer (bounded, never raises)."""
        self.users -= 1
        if self.users > 0:
            return
        try:
            await asyncio.wait_for(self.run(self.reset), timeout_s)
        except Exception as exc:  # noqa: BLE001 - unloading a producer whose device is gone
            log.warning("camera.producer_unload_failed", cti=self.cti, error=str(exc) or type(exc).__name__)
        self._pool.shutdown(wait=False)  # never join the producer thread on the event loop


async def list_devices(cti: str) -> list[dict[str, Any]]:
    """The devices a producer finds (loaded for the call and unloaded after)."""
    host = ProducerHost(cti)
    host.users += 1
    try:
        devices: list[dict[str, Any]] = await host.run(host.devices)
        return devices
    finally:
        await host.release()


def _info(device_info: Any, attr: str) -> Any:
    """A device-info field; producers raise NotAvailable for the ones they do not support."""
    try:
        return getattr(device_info, attr)
    except Exception:  # noqa: BLE001 - genicam.gentl.NotAvailableException and kin
        return None


def copy_out(component: Any, frame_id: int) -> Frame:
    """Pixels out of a harvesters component (a view the producer will overwrite)."""
    fmt, h, w = component.data_format, component.height, component.width
    planes = _PLANES.get(fmt)
    data = component.data
    if planes is None or data.size != h * w * planes:
        # unknown format or a short buffer: hand it on as is, the analysis refuses it
        return Frame(np.array(data, copy=True), fmt, frame_id, time.monotonic(), complete=False)
    image = data.reshape((h, w) if planes == 1 else (h, w, planes))
    if planes == 4:  # RGBa8: drop alpha while copying
        return Frame(np.ascontiguousarray(image[..., :3]), "RGB8", frame_id, time.monotonic())
    return Frame(image.copy(), fmt, frame_id, time.monotonic())


class _GenTLCamera:
    kind = "camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self._options = url.options_as(GenTLOptions, self.kind)
        self._host: ProducerHost = context.setdefault(f"gentl:{url.location}", ProducerHost(url.location))
        self._host.users += 1
        self._closed = False
        self.name = self._options.serial or self._options.user_name or "?"
        self._ia: Any = None
        self._plan: list[Any] = []
        self._frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._stop_fetch = threading.Event()
        self._flush_request = threading.Event()
        self._flushed: asyncio.Future[None] | None = None
        self._fetcher: threading.Thread | None = None
        self._trouble = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._acquiring = False
        self._soft_trigger = False  # frames come on our software trigger (else: free-run / a line)
        self._unanswered = 0  # software triggers fired that no frame has answered yet
        self.state = "closed"
        self.frames = 0
        self.incomplete = 0
        self.missed = 0
        self.rebuilds = 0

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "frames": self.frames,
            "incomplete": self.incomplete,
            "missed": self.missed,
            "rebuilds": self.rebuilds,
        }

    @contextlib.asynccontextmanager
    async def _step(self, what: str, timeout_s: float, connected: bool = True) -> AsyncIterator[None]:
        """One public operation within ``timeout_s``; anything the library raises becomes a
        DriverIOError, the deadline a DriverTimeout."""
        if self._closed:
            raise DriverIOError(f"{self.kind} {self.name}: closed")
        if connected and self._ia is None and self.state != "rebuilding":
            raise DriverIOError(f"{self.kind} {self.name}: not connected (call connect() first)")
        try:
            async with asyncio.timeout(timeout_s):
                yield
        except CellError:
            raise
        except TimeoutError as exc:
            raise DriverTimeout(f"{self.kind} {self.name}: {what} not done within {timeout_s:g} s") from exc
        except Exception as exc:  # genicam/harvesters errors, named and wrapped
            raise DriverIOError(f"{self.kind} {self.name}: {what} failed: {type(exc).__name__}: {exc}") from exc

    # ---------------------------------------------------------------- lifecycle
    async def connect(self, timeout_s: float) -> None:
        async with self._step(f"connect (producer {self._host.cti})", timeout_s, connected=False):
            await self._host.run(self._create)
        self.state = "connected"

    def _create(self) -> None:
        try:
            self._host.load()
        except (OSError, FileNotFoundError) as exc:
            raise DriverInitError(f"{self.kind}: cannot load GenTL producer {self._host.cti}: {exc}") from exc
        search = (
            {"serial_number": self._options.serial}
            if self._options.serial
            else {"user_defined_name": self._options.user_name}
        )
        try:
            self._ia = self._host.harvester.create(search)
        except ValueError as exc:
            found = ", ".join(f"{d['model']} serial={d['serial']} name={d['user_name']}" for d in self._host.devices())
            raise DriverInitError(
                f"{self.kind}: no single device matches {search} in {self._host.cti} (found: {found or 'none'})"
            ) from exc
        # some producers need more buffers than asked for (TLSimu: at least 5)
        self._ia.num_buffers = max(self._options.num_buffers, self._ia.min_num_buffers)

    async def _configure(self, plan: list[Any], timeout_s: float) -> list[str]:
        async with self._step("configure", timeout_s):
            self._plan = plan
            restart = self._acquiring
            if restart:  # transport parameters are locked while acquiring: stop, apply, restart
                await self._stop_acquisition()
            skipped: list[str] = await self._host.run(self._apply)
            if skipped:
                log.warning("camera.features_skipped", camera=self.name, features=skipped)
            self._soft_trigger = await self._host.run(self._software_triggered, skipped)
            if restart:
                self._drop_frames()  # taken with the settings that were just replaced
                await self._start()
            return skipped

    def _apply(self) -> list[str]:
        return apply_plan(self._ia.remote_device.node_map, self._plan, self.name, self._options.strict)

    def _software_triggered(self, skipped: list[str]) -> bool:
        raise NotImplementedError

    async def start(self, timeout_s: float) -> None:
        async with self._step("start", timeout_s):
            if not self._acquiring:
                await self._start()

    async def _start(self) -> None:
        await self._host.run(self._ia.start)
        self._stop_fetch.clear()
        loop = asyncio.get_running_loop()
        self._fetcher = threading.Thread(
            target=self._fetch_loop, args=(self._ia, loop), daemon=True, name=f"fetch-{self.name}"
        )
        self._fetcher.start()
        self._acquiring = True
        self.state = "acquiring"
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def _stop_acquisition(self) -> None:
        self._acquiring = False
        self._stop_fetch.set()
        if self._fetcher is not None:
            await asyncio.to_thread(self._fetcher.join, self._options.poll_s + 1.0)
            self._fetcher = None
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)  # no fetch thread left to answer: nothing to flush there
        self._flush_request.clear()
        self._unanswered = 0
        if self._ia is not None:
            await self._host.run(self._safe, self._ia.stop)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        started = time.monotonic()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if self._supervisor is not None:
                    self._supervisor.cancel()
                    await asyncio.gather(self._supervisor, return_exceptions=True)
                await self._stop_acquisition()
                if self._ia is not None:
                    await self._host.run(self._safe, self._ia.destroy)
        except Exception as exc:  # noqa: BLE001 - close never raises: the device may be gone
            log.warning("camera.close_incomplete", camera=self.name, error=str(exc) or type(exc).__name__)
        self._supervisor = None
        self._stop_fetch.set()  # a fetch thread left behind by a timeout still ends
        self._ia = None
        self._drop_frames()
        self.state = "closed"
        # the last camera of a producer unloads it
        await self._host.release(max(CLOSE_TIMEOUT_S - (time.monotonic() - started), RELEASE_MIN_S))

    @staticmethod
    def _safe(fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - tearing down a device that may be gone
            log.debug("camera.teardown_error", error=str(exc))

    # ---------------------------------------------------------------- frames
    def _fetch_loop(self, ia: Any, loop: asyncio.AbstractEventLoop) -> None:
        frame_id = 0
        while not self._stop_fetch.is_set():
            if self._flush_request.is_set():
                self._flush_request.clear()
                self._discard_fetched(ia)
                loop.call_soon_threadsafe(self._flush_done)
                continue
            try:
                buf = ia.try_fetch(timeout=self._options.poll_s)
            except Exception as exc:  # noqa: BLE001 - any fetch failure means the device is gone
                if not self._stop_fetch.is_set():
                    loop.call_soon_threadsafe(self._report, "lost", str(exc))
                return
            if buf is None:
                continue
            try:
                frame_id += 1
                frame = copy_out(buf.payload.components[0], frame_id)
            finally:
                buf.queue()
            loop.call_soon_threadsafe(self._deliver, frame)

    @staticmethod
    def _discard_fetched(ia: Any) -> None:
        """Give back every buffer the producer has filled; they belong to no one now."""
        while (buf := ia.try_fetch(timeout=0.001)) is not None:
            buf.queue()

    def _flush_done(self) -> None:
        # runs after every frame the fetch thread delivered before it: those go too
        self._drop_frames()
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)

    async def _flush(self) -> None:
        """Drop the strips or frames queued here and in the producer."""
        if self._fetcher is not None and self._fetcher.is_alive():
            self._flushed = asyncio.get_running_loop().create_future()
            self._flush_request.set()
            await self._flushed
        self._drop_frames()

    def _drop_frames(self) -> None:
        while not self._frames.empty():
            self._frames.get_nowait()
        self._unanswered = 0

    def _deliver(self, frame: Frame) -> None:
        if self._closed:
            return
        self.frames += 1
        self._unanswered = max(self._unanswered - 1, 0)
        self.incomplete += not frame.complete  # short or unknown buffers; harvesters drops
        self._frames.put_nowait(frame)  # the incomplete ones it sees, and those count in missed

    def _report(self, state: str, error: str) -> None:
        self.state = state
        log.error("camera.trouble", camera=self.name, state=state, error=error)
        self._trouble.set()

    async def grab(self, timeout_s: float) -> Frame:
        if self._closed:
            raise DriverIOError(f"{self.kind} {self.name}: closed")
        if not self._acquiring and self.state in ("connected", "closed"):
            raise DriverIOError(f"{self.kind} {self.name}: not acquiring (call start() first)")
        try:
            return await asyncio.wait_for(self._frames.get(), timeout_s)
        except TimeoutError as exc:
            expected = self._unanswered > 0 or not self._soft_trigger
            if expected:
                self.missed += 1
                if self.state == "acquiring":
                    self._report("silent", f"no frame within {timeout_s:g} s")
            why = self.state if expected else "nothing triggered"
            raise DriverTimeout(f"{self.kind} {self.name}: no frame within {timeout_s:g} s ({why})") from exc

    def _acquiring_or_fail(self, what: str) -> None:
        if self._closed:
            raise DriverIOError(f"{self.kind} {self.name}: closed")
        if self.state != "acquiring":
            hint = " (call start() first)" if self.state == "connected" else ""
            raise DriverIOError(f"{self.kind} {self.name}: cannot {what}, camera is {self.state}{hint}")

    def _fire(self, frame_start: bool) -> None:
        node_map = self._ia.remote_device.node_map
        if frame_start and node_map.has_node("TriggerSelector"):
            node_map.TriggerSelector.value = "FrameStart"  # TriggerSoftware fires the selected trigger
        node_map.TriggerSoftware.execute()

    # ---------------------------------------------------------------- supervision
    async def _supervise(self) -> None:
        delay_s = 0.5
        while True:
            await self._trouble.wait()
            self._trouble.clear()
            while True:
                try:
                    await self._rebuild()
                    delay_s = 0.5
                    break
                except Exception as exc:  # noqa: BLE001 - keep trying: the camera may come back
                    log.warning("camera.rebuild_failed", camera=self.name, error=str(exc), retry_s=delay_s)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, self._options.rebuild_s)

    async def _rebuild(self) -> None:
        self.state = "rebuilding"
        await self._stop_acquisition()
        if self._ia is not None:
            await self._host.run(self._safe, self._ia.destroy)
            self._ia = None
        await self._host.run(self._create)
        await self._host.run(self._apply)
        self._drop_frames()  # frames of the lost acquirer belong to nobody
        await self._start()
        self.rebuilds += 1
        log.info("camera.rebuilt", camera=self.name, rebuilds=self.rebuilds)


class GenTLFrameCamera(_GenTLCamera):
    """Genie Nano: FrameStart from software (trigger() fires it) or from Line1 (trigger() is
    then a no-op: the hardware line triggers)."""

    kind = "frame camera"

    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        super().__init__(url, context)
        self._line_triggered = False

    async def configure(self, settings: FrameCameraSettings, timeout_s: float) -> None:
        self._line_triggered = settings.trigger_source != "Software"
        await self._configure(frame_camera_plan(settings), timeout_s)

    def _software_triggered(self, skipped: list[str]) -> bool:
        node_map = self._ia.remote_device.node_map
        return (
            not self._line_triggered
            and node_map.has_node("TriggerSoftware")
            and not any(name.startswith(("TriggerMode", "TriggerSource")) for name in skipped)
        )

    async def trigger(self, timeout_s: float) -> None:
        self._acquiring_or_fail("trigger")
        if self._line_triggered:
            return  # FrameStart comes from Line1
        async with self._step("trigger", timeout_s):
            if self._soft_trigger:
                # counted before firing: the frame may be delivered before this call resumes
                self._unanswered += 1
                await self._host.run(self._fire, False)


class GenTLLineScanCamera(_GenTLCamera):
    """Linea: strips of ``lines_per_revolution`` lines, each started by begin_strip()."""

    kind = "line-scan camera"

    async def configure(self, settings: LineScanSettings, timeout_s: float) -> None:
        await self._configure(line_scan_plan(settings), timeout_s)

    def _software_triggered(self, skipped: list[str]) -> bool:
        node_map = self._ia.remote_device.node_map
        return node_map.has_node("TriggerSoftware") and software_frame_start(self._plan, skipped)

    async def begin_strip(self, timeout_s: float) -> None:
        # AcquisitionStop/Start would drop a partial strip too, but costs the lock cycle the
        # producers leak on; a FrameStart while a strip is being taken does not cut it short
        # on every camera, so a caller that aborted a part mid-revolution still checks the
        # strip's timestamp.
        self._acquiring_or_fail("begin a strip")
        async with self._step("begin_strip", timeout_s):
            await self._flush()
            if self._soft_trigger:
                self._unanswered = 1  # before firing, as for trigger()
                await self._host.run(self._fire, True)
