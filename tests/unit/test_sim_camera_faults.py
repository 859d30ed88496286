"""The simulated cameras' injected faults (world.faults), at time scale 0: a lost frame or
strip is a DriverTimeout at once, in the order the frames were expected, never a wall-clock
wait; disconnects, short buffers and refused configurations as the GenTL driver shows them."""

from __future__ import annotations

import asyncio
import time

import pytest

from cellctl.drivers import DeviceUrl, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.camera import FrameCameraSettings, LineScanSettings
from cellctl.sim.camera import SimFrameCamera, SimLineScanCamera
from cellctl.sim.world import WORLD_KEY, SimWorld

LONG_S = 60.0  # a grab timeout that a lost frame must NOT wait for at time scale 0
BOUND_S = 10.0  # upper bound for what is immediate in sim time (2 loaded cores)
FRAME = FrameCameraSettings(pixel_format="Mono8", width_px=320, height_px=240)
STRIP = LineScanSettings(pixel_format="Mono8", line_width_px=320, lines_per_revolution=256, encoder_divider=32)


async def _frame_camera(world: SimWorld) -> SimFrameCamera:
    cam = SimFrameCamera(DeviceUrl.parse("sim://"), {WORLD_KEY: world})
    await cam.connect(1.0)
    await cam.configure(FRAME, 1.0)
    await cam.start(1.0)
    return cam


async def test_a_dropped_frame_times_out_at_once_in_its_place():
    world = SimWorld(time_scale=0.0)
    cam = await _frame_camera(world)
    try:
        await cam.trigger(1.0)
        world.faults.frame_timeouts = 1
        await cam.trigger(1.0)
        await cam.trigger(1.0)
        assert world.faults.frame_timeouts == 0
        async with asyncio.timeout(BOUND_S):
            first = await cam.grab(LONG_S)
            with pytest.raises(DriverTimeout, match="lost"):
                await cam.grab(LONG_S)
            third = await cam.grab(LONG_S)
        assert third.frame_id == first.frame_id + 2
        assert cam.health()["missed"] == 1 and cam.health()["frames"] == 2
    finally:
        await cam.close()


async def test_a_dropped_frame_waits_its_timeout_in_sim_time():
    world = SimWorld(time_scale=1.0)
    cam = await _frame_camera(world)
    try:
        world.faults.frame_timeouts = 1
        await cam.trigger(1.0)
        started = time.monotonic()
        with pytest.raises(DriverTimeout):
            await cam.grab(0.1)
        assert time.monotonic() - started >= 0.1  # as a real camera: silence until the timeout
    finally:
        await cam.close()


async def test_a_dropped_strip_times_out_at_once():
    world = SimWorld(time_scale=0.0)
    cam = SimLineScanCamera(DeviceUrl.parse("sim://"), {WORLD_KEY: world})
    try:
        await cam.connect(1.0)
        await cam.configure(STRIP, 1.0)
        await cam.start(1.0)
        world.faults.strip_timeouts = 1
        await cam.begin_strip(1.0)
        world.advance_encoder(world.encoder_counts_per_rev)
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(DriverTimeout):
                await cam.grab(LONG_S)
        world.advance_encoder(world.encoder_counts_per_rev)
        assert (await cam.grab(BOUND_S)).data.shape == (256, 320)
    finally:
        await cam.close()


async def test_a_disconnect_fails_the_trigger_then_the_camera_is_back():
    world = SimWorld(time_scale=0.0)
    cam = await _frame_camera(world)
    try:
        world.faults.frame_disconnects = 1
        with pytest.raises(DriverIOError, match="frame camera: device lost"):
            await cam.trigger(1.0)
        assert world.faults.frame_disconnects == 0
        await cam.trigger(1.0)
        assert (await cam.grab(BOUND_S)).complete
    finally:
        await cam.close()


async def test_an_incomplete_frame_arrives_short_and_marked():
    world = SimWorld(time_scale=0.0)
    cam = await _frame_camera(world)
    try:
        world.faults.incomplete_frames = 1
        await cam.trigger(1.0)
        await cam.trigger(1.0)
        short, whole = await cam.grab(BOUND_S), await cam.grab(BOUND_S)
        assert not short.complete and short.data.size == 240 * 320 // 2 and short.data.ndim == 1
        assert whole.complete and whole.data.shape == (240, 320)
        assert world.faults.incomplete_frames == 0
    finally:
        await cam.close()


async def test_a_refused_configure_is_a_driver_init_error_and_keeps_the_settings():
    world = SimWorld(time_scale=0.0)
    cam = await _frame_camera(world)
    try:
        world.faults.configure_refusals = 1
        with pytest.raises(DriverInitError, match="refused"):
            await cam.configure(FrameCameraSettings(pixel_format="Mono8", width_px=256, height_px=240), 1.0)
        assert world.faults.configure_refusals == 0
        await cam.trigger(1.0)
        assert (await cam.grab(BOUND_S)).data.shape == (240, 320)  # the previous settings
    finally:
        await cam.close()
