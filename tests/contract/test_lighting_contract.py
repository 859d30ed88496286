"""One contract for every lighting backend: ``sim`` (in-process) and the Gardasoft driver on
the controller emulator's pty (in-process, coupled to the same kind of world): switching,
the overdrive limits refused at configure(), close() switching off, the lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cellctl.drivers import DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.lighting import LIGHTS, LightingSettings
from cellctl.drivers.lighting.gardasoft import CLOSE_TIMEOUT_S
from cellctl.sim.gardasoft import GardasoftEmulator
from tests.contract.rig import Rig
from tests.contract.rig import rig as backend_rig

T_S = 5.0  # a step that works: generous, 2 loaded cores
SLACK_S = 5.0  # scheduling slack on top of a driver-owned deadline (an upper bound, not a race)
STROBE = LightingSettings(mode="strobe", intensity_pct=160.0, pulse_width_ms=5.0)


@pytest.fixture(params=["sim", "gardasoft"])
async def rig(request, tmp_path) -> AsyncIterator[Rig]:
    async with backend_rig(LIGHTS, GardasoftEmulator, "", request.param, tmp_path, T_S) as made:
        yield made


async def test_on_and_off_switch_the_light_at_the_part(rig):
    light, world = rig.device, rig.world
    await light.configure(LightingSettings(intensity_pct=80.0), T_S)
    await light.on(T_S)
    assert world.light_gain == pytest.approx(1.0) and light.health()["lit"] is True
    await light.off(T_S)
    assert world.light_gain == 0.0 and light.health()["lit"] is False
    await light.configure(STROBE, T_S)
    await light.on(T_S)
    assert world.light_gain == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("mode", "pct", "width_ms"),
    [("strobe", 150.0, 60.0), ("strobe", 250.0, 20.0), ("continuous", 120.0, 10.0), ("strobe", 320.0, 5.0)],
)
async def test_settings_beyond_the_limits_are_refused_at_configure(rig, mode, pct, width_ms):
    light, world = rig.device, rig.world
    unsafe = LightingSettings.model_construct(
        channel=1, mode=mode, intensity_pct=pct, pulse_width_ms=width_ms, pulse_delay_ms=0.0, warmup_s=0.0
    )
    with pytest.raises(DriverInitError, match=f"{pct:g} %"):
        await light.configure(unsafe, T_S)
    await light.on(T_S)  # the previous (default) settings are still the ones in force
    assert world.light_gain == pytest.approx(1.0)


async def test_a_warm_up_longer_than_the_timeout_is_a_timeout_with_the_light_left_off(rig):
    light, world = rig.device, rig.world
    await light.configure(LightingSettings(warmup_s=2.0), T_S)
    async with asyncio.timeout(1.0 + SLACK_S):
        with pytest.raises(DriverTimeout, match="warm-up"):
            await light.on(1.0)
    assert world.light_gain == 0.0


async def test_close_switches_off_is_bounded_and_safe_twice(rig):
    light, world = rig.device, rig.world
    await light.on(T_S)
    async with asyncio.timeout(2 * CLOSE_TIMEOUT_S + SLACK_S):
        await light.close()
        await light.close()
    assert world.light_gain == 0.0 and light.health()["connected"] is False
    for call in (light.connect(T_S), light.configure(STROBE, T_S), light.on(T_S), light.off(T_S)):
        with pytest.raises(DriverIOError, match="closed"):
            await call


async def test_calls_before_connect_are_io_errors(rig):
    light = rig.make()
    for call in (light.on(T_S), light.off(T_S)):
        with pytest.raises(DriverIOError, match="not connected"):
            await call
    assert rig.world.light_gain == 0.0
