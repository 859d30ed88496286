"""One contract for every camera backend: the same trigger semantics, errors and lifecycle.

Backends (python-can's Back2BackTestCase pattern, as a parametrised fixture): ``sim`` (the
in-process renderer at time scale 0), ``gentl-tlsimu`` (the GenTL driver on TLSimu.cti from
genicam 1.5.0: software trigger, no selector) and, for what needs no trigger,
``gentl-viky`` (genicam 1.6's free-running producer). A test a producer cannot express says
so with a skip naming the missing feature.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import genicam
import pytest

from cellctl.drivers import DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.camera import FRAME_CAMERAS, LINE_CAMERAS, FrameCameraSettings, LineScanSettings
from cellctl.drivers.camera.gentl import CLOSE_TIMEOUT_S
from cellctl.sim.world import WORLD_KEY, SimWorld
from tests.data.tlsimu import tlsimu_cti

T_S = 10.0  # a step that works: generous, 2 loaded cores
QUIET_S = 0.3  # a grab that must find nothing
SLACK_S = 5.0  # scheduling slack on top of a driver-owned deadline (an upper bound, not a race)
VIKY = Path(genicam.__file__).parent / "viky.cti"
FRAME = FrameCameraSettings(pixel_format="Mono8", width_px=320, height_px=240)
WIDER = FrameCameraSettings(pixel_format="Mono8", width_px=256, height_px=240)  # a transport parameter changed
# 8192 encoder counts per revolution / 32 = 256 lines: one strip per turn of the sim's table
STRIP = LineScanSettings(pixel_format="Mono8", line_width_px=320, lines_per_revolution=256, encoder_divider=32)


@dataclass
class Rig:
    cam: Any
    triggered: bool = True  # frames come only on trigger() (not a free-running producer)
    line1: bool = True  # the device offers TriggerSource Line1
    world: SimWorld | None = None
    turn: Callable[[float], Awaitable[None]] = field(default=lambda degrees: asyncio.sleep(0))
    partial_strips: bool = True  # a strip builds up while the table turns


def _url(backend: str) -> str:
    if backend == "sim":
        return "sim://?time_scale=0"
    if backend == "gentl-tlsimu":
        return f"gentl://{tlsimu_cti()}?serial=SN_InterfaceA_0&strict=false"
    return f"gentl://{VIKY}?serial=1&strict=false"


async def _rig(backend: str, registry: Any) -> AsyncIterator[Rig]:
    world = SimWorld(time_scale=0.0)
    cam = registry.create(_url(backend), context={WORLD_KEY: world})
    rig = Rig(cam, triggered=backend != "gentl-viky", line1=backend == "sim")
    if backend == "sim":
        rig.world = world

        async def turn(degrees: float) -> None:
            counts = round(degrees / 360 * world.encoder_counts_per_rev)
            for _ in range(16):  # in steps, as a move turns the encoder
                world.advance_encoder(counts // 16)
                await asyncio.sleep(0)

        rig.turn = turn
    else:
        rig.partial_strips = False  # TLSimu delivers a whole frame on the trigger
    try:
        await cam.connect(T_S)
        yield rig
    finally:
        await cam.close()


@pytest.fixture(params=["sim", "gentl-tlsimu", "gentl-viky"])
async def frame_rig(request) -> AsyncIterator[Rig]:
    async for rig in _rig(request.param, FRAME_CAMERAS):
        yield rig


@pytest.fixture(params=["sim", "gentl-tlsimu"])
async def line_rig(request) -> AsyncIterator[Rig]:
    async for rig in _rig(request.param, LINE_CAMERAS):
        yield rig


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(T_S):
        while not condition():
            await asyncio.sleep(0.01)


def _need_trigger(rig: Rig) -> None:
    if not rig.triggered:
        pytest.skip("viky free-runs: it has no trigger features")


# ------------------------------------------------------------------ frame camera


async def test_no_frame_and_no_trigger_before_start(frame_rig):
    cam = frame_rig.cam
    await cam.configure(FRAME, T_S)
    assert cam.health()["state"] == "connected"
    with pytest.raises(DriverIOError, match="start"):
        await cam.trigger(T_S)
    with pytest.raises(DriverIOError, match="start"):
        await cam.grab(QUIET_S)
    assert cam.health()["frames"] == 0


async def test_one_frame_per_software_trigger(frame_rig):
    _need_trigger(frame_rig)
    cam = frame_rig.cam
    await cam.configure(FRAME, T_S)
    await cam.start(T_S)
    ids = []
    for _ in range(3):
        await cam.trigger(T_S)
        frame = await cam.grab(T_S)
        assert (frame.pixel_format, frame.data.shape, frame.complete) == ("Mono8", (240, 320), True)
        ids.append(frame.frame_id)
    assert ids == sorted(set(ids))
    with pytest.raises(DriverTimeout):
        await cam.grab(QUIET_S)  # three triggers, three frames, no more
    health = cam.health()
    assert (health["state"], health["frames"], health["missed"]) == ("acquiring", 3, 0)


async def test_grab_without_a_trigger_times_out_within_its_timeout_and_is_no_miss(frame_rig):
    _need_trigger(frame_rig)
    cam = frame_rig.cam
    await cam.configure(FRAME, T_S)
    await cam.start(T_S)
    async with asyncio.timeout(QUIET_S + SLACK_S):
        with pytest.raises(DriverTimeout, match=r"no .*frame within 0\.3 s"):
            await cam.grab(QUIET_S)
    assert cam.health()["missed"] == 0 and cam.health()["state"] == "acquiring"
    await cam.trigger(T_S)  # and the camera still answers the next trigger
    assert (await cam.grab(T_S)).data.shape == (240, 320)


async def test_with_trigger_source_line1_trigger_is_a_no_op(frame_rig):
    _need_trigger(frame_rig)
    if not frame_rig.line1:
        pytest.skip("TLSimu's TriggerSource offers Software only")
    cam = frame_rig.cam
    await cam.configure(FRAME.model_copy(update={"trigger_source": "Line1"}), T_S)
    await cam.start(T_S)
    await cam.trigger(T_S)
    with pytest.raises(DriverTimeout):
        await cam.grab(QUIET_S)  # the hardware line triggers, and nothing pulses it here


async def test_a_transport_parameter_changed_while_acquiring_is_applied(frame_rig):
    cam = frame_rig.cam
    await cam.configure(FRAME, T_S)
    await cam.start(T_S)
    await cam.trigger(T_S)
    assert (await cam.grab(T_S)).data.shape == (240, 320)
    await cam.configure(WIDER, T_S)  # stop, apply, restart
    assert cam.health()["state"] == "acquiring"
    await cam.trigger(T_S)
    assert (await cam.grab(T_S)).data.shape == (240, 256)


async def test_a_value_the_device_refuses_is_a_driver_init_error(frame_rig):
    cam = frame_rig.cam
    with pytest.raises(DriverInitError, match=r"(?i)width|refused"):
        await cam.configure(FrameCameraSettings.model_construct(**{**FRAME.model_dump(), "width_px": 8000}), T_S)


async def test_close_twice_is_bounded_and_every_call_after_it_is_an_io_error(frame_rig):
    cam = frame_rig.cam
    await cam.configure(FRAME, T_S)
    await cam.start(T_S)
    async with asyncio.timeout(2 * CLOSE_TIMEOUT_S + SLACK_S):
        await cam.close()
        await cam.close()
    assert cam.health()["state"] == "closed"
    for call in (cam.connect(T_S), cam.configure(FRAME, T_S), cam.start(T_S), cam.trigger(T_S), cam.grab(QUIET_S)):
        with pytest.raises(DriverIOError, match="closed"):
            await call


async def test_calls_before_connect_are_io_errors():
    for backend in ("sim", "gentl-viky"):
        cam = FRAME_CAMERAS.create(_url(backend), context={WORLD_KEY: SimWorld(time_scale=0.0)})
        try:
            for call in (cam.configure(FRAME, T_S), cam.start(T_S), cam.trigger(T_S), cam.grab(QUIET_S)):
                with pytest.raises(DriverIOError):
                    await call
        finally:
            await cam.close()


# ------------------------------------------------------------------ line-scan camera


async def test_no_strip_before_start(line_rig):
    cam = line_rig.cam
    await cam.configure(STRIP, T_S)
    with pytest.raises(DriverIOError, match="start"):
        await cam.begin_strip(T_S)
    with pytest.raises(DriverIOError, match="start"):
        await cam.grab(QUIET_S)


async def test_begin_strip_and_a_revolution_give_one_strip(line_rig):
    cam = line_rig.cam
    await cam.configure(STRIP, T_S)
    await cam.start(T_S)
    await cam.begin_strip(T_S)
    await line_rig.turn(360)
    strip = await cam.grab(T_S)
    assert (strip.pixel_format, strip.data.shape, strip.complete) == ("Mono8", (256, 320), True)
    with pytest.raises(DriverTimeout):
        await cam.grab(QUIET_S)


async def test_begin_strip_drops_the_strips_queued(line_rig):
    cam = line_rig.cam
    await cam.configure(STRIP, T_S)
    await cam.start(T_S)
    await cam.begin_strip(T_S)
    await line_rig.turn(360)
    await _until(lambda: cam.health()["frames"] == 1)  # a strip waits, nobody took it
    await cam.begin_strip(T_S)
    await line_rig.turn(360)
    strip = await cam.grab(T_S)
    assert strip.data.shape == (256, 320) and cam.health()["frames"] == 2
    with pytest.raises(DriverTimeout):
        await cam.grab(QUIET_S)  # the first strip is gone


async def test_begin_strip_drops_a_partial_strip(line_rig):
    if not line_rig.partial_strips:
        pytest.skip("TLSimu has no encoder: a strip is whole on its trigger")
    cam = line_rig.cam
    await cam.configure(STRIP, T_S)
    await cam.start(T_S)
    await cam.begin_strip(T_S)
    await line_rig.turn(180)
    await cam.begin_strip(T_S)  # the part is placed again: its strip starts here
    await line_rig.turn(270)
    with pytest.raises(DriverTimeout):
        await cam.grab(QUIET_S)  # 180 + 270 would have completed the old strip
    await line_rig.turn(90)
    assert (await cam.grab(T_S)).data.shape == (256, 320)


async def test_line_camera_close_twice_and_calls_after_it(line_rig):
    cam = line_rig.cam
    await cam.configure(STRIP, T_S)
    await cam.start(T_S)
    await cam.close()
    await cam.close()
    for call in (cam.configure(STRIP, T_S), cam.start(T_S), cam.begin_strip(T_S), cam.grab(QUIET_S)):
        with pytest.raises(DriverIOError, match="closed"):
            await call
