"""One contract for every stage backend: ``sim`` (in-process) and the SCL driver on the drive
emulator's pty (in-process, coupled to the same kind of world). Same moves, same errors,
same lifecycle; the world's faults (stall, alarm) reach both the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cellctl.drivers import DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.stage import STAGES, MotionSettings, StageAlarm
from cellctl.drivers.stage.scl import CLOSE_TIMEOUT_S
from cellctl.sim.scl_drive import SclDriveEmulator
from tests.contract.rig import Rig
from tests.contract.rig import rig as backend_rig

T_S = 10.0  # a step that works: generous, 2 loaded cores
SHORT_S = 0.5  # a step that must fail by its deadline
SLACK_S = 5.0  # scheduling slack on top of a driver-owned deadline (an upper bound, not a race)
FAST = MotionSettings(speed_rps=5.0, accel_rps2=200.0, settle_ms=1.0)
OVER_TEMPERATURE = 1 << 3


@pytest.fixture(params=["sim", "scl"])
async def rig(request, tmp_path) -> AsyncIterator[Rig]:
    async with backend_rig(
        STAGES, SclDriveEmulator, "?steps_per_rev=20000&poll_ms=5", request.param, tmp_path, T_S
    ) as made:
        yield made


async def test_home_then_quarter_turns_come_back_round(rig):
    stage, world = rig.device, rig.world
    await stage.configure(FAST, T_S)
    await stage.move_by(33.0, T_S)
    await stage.home(T_S)
    assert world.angle_deg == 0.0
    start = world.encoder_count
    await stage.move_by(90.0, T_S)
    assert world.angle_deg == pytest.approx(90.0)
    for _ in range(3):
        await stage.move_by(90.0, T_S)
    assert world.encoder_count - start == world.encoder_counts_per_rev and world.angle_deg == 0.0
    assert stage.health()["connected"] is True


async def test_a_stalled_drive_is_a_timeout_within_the_move_timeout_and_recovers(rig):
    stage, world = rig.device, rig.world
    await stage.configure(FAST, T_S)
    world.faults.stage_stall = True
    async with asyncio.timeout(SHORT_S + SLACK_S):
        with pytest.raises(DriverTimeout, match=r"90 deg move not done within 0\.5 s"):
            await stage.move_by(90.0, SHORT_S)
    world.faults.stage_stall = False
    before = world.encoder_count
    await stage.move_by(90.0, T_S)
    assert world.encoder_count - before == world.encoder_counts_per_rev // 4


async def test_an_alarm_names_itself_and_the_drive_stays_off_until_homed(rig):
    stage, world = rig.device, rig.world
    await stage.configure(FAST, T_S)
    world.faults.stage_alarm_bits = OVER_TEMPERATURE
    with pytest.raises(StageAlarm, match="over-temperature") as alarm:
        await stage.move_by(360.0, T_S)
    assert isinstance(alarm.value, DriverIOError) and alarm.value.alarms == ["over-temperature"]
    assert 0 < world.angle_deg < 360.0  # stopped halfway
    with pytest.raises(DriverIOError):
        await stage.move_by(90.0, T_S)  # disabled by the alarm
    await stage.home(T_S)  # the recovery step: resets the alarm, enables the drive, homes
    await stage.move_by(90.0, T_S)
    assert world.angle_deg == pytest.approx(90.0)
    world.faults.stage_alarm_bits = OVER_TEMPERATURE
    with pytest.raises(StageAlarm):
        await stage.move_by(360.0, T_S)
    await stage.connect(T_S)  # connecting again resets it too
    await stage.move_by(90.0, T_S)


async def test_settings_the_drive_refuses_are_a_driver_init_error(rig):
    too_fast = MotionSettings.model_construct(speed_rps=500.0, accel_rps2=20.0, settle_ms=0.0)
    with pytest.raises(DriverInitError):
        await rig.device.configure(too_fast, T_S)


async def test_close_twice_is_bounded_and_every_call_after_it_is_an_io_error(rig):
    stage = rig.device
    async with asyncio.timeout(2 * CLOSE_TIMEOUT_S + SLACK_S):
        await stage.close()
        await stage.close()
    assert stage.health()["connected"] is False
    for call in (stage.connect(T_S), stage.configure(FAST, T_S), stage.home(T_S), stage.move_by(90.0, T_S)):
        with pytest.raises(DriverIOError, match="closed"):
            await call


async def test_calls_before_connect_are_io_errors(rig):
    stage = rig.make()
    for call in (stage.configure(FAST, T_S), stage.home(T_S), stage.move_by(90.0, T_S)):
        with pytest.raises(DriverIOError, match="not connected"):
            await call
    assert stage.health()["connected"] is False
