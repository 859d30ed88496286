"""The SCL turntable driver against the SCL drive emulator, over a real pty opened by pyserial.

No mocks: the production driver, SerialLink and pyserial talk to the emulator's pty master.
Moves in real time are short (fast profiles); the encoder tests use a time_scale=0 world.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cellctl.drivers import DeviceUrl, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.stage import MotionSettings
from cellctl.drivers.stage.scl import SclStage, StageAlarm, StageFault
from cellctl.sim.scl_drive import SC_HOMING, SC_IN_POSITION, SC_MOVING, SclDriveEmulator
from cellctl.sim.world import SimWorld
from tests.emulator_process import emulator_process

STEPS_PER_REV = 20000
FAST = MotionSettings(speed_rps=5.0, accel_rps2=200.0, settle_ms=1.0)  # a quarter turn in ~75 ms
STEADY = MotionSettings(speed_rps=1.0, accel_rps2=20.0, settle_ms=1.0)  # a quarter turn in ~0.3 s
OVER_TEMPERATURE, OPEN_WINDING = 1 << 3, 1 << 8


def _stage(path: str, options: str = "") -> SclStage:
    return SclStage(DeviceUrl.parse(f"serial://{path}?steps_per_rev={STEPS_PER_REV}&poll_ms=5{options}"), {})


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(time_scale=0.0)


@pytest.fixture
async def drive(tmp_path):
    emulator = SclDriveEmulator(link_dir=tmp_path)
    path = await emulator.start()
    yield emulator, path
    await emulator.close()


@pytest.fixture
async def stage(drive):
    _, path = drive
    stage = _stage(path)
    await stage.connect(timeout_s=5.0)
    yield stage
    await stage.close()


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


async def test_connect_turns_on_acks_identifies_and_enables_the_drive(drive, stage):
    emulator, _ = drive
    assert stage.identity == "107M062"
    assert emulator.commands == ["PR4", "MV", "AR", "AL", f"EG{STEPS_PER_REV}", "ME"]
    assert emulator.enabled and emulator.protocol == 4


async def test_configure_sends_speed_and_acceleration_compactly(drive, stage):
    emulator, _ = drive
    await stage.configure(MotionSettings(speed_rps=2.5, accel_rps2=40.0, settle_ms=0.0), timeout_s=5.0)
    assert emulator.commands[-3:] == ["VE2.5", "AC40", "DE40"]
    assert (emulator.speed_rps, emulator.accel_rps2, emulator.decel_rps2) == (2.5, 40.0, 40.0)


async def test_quarter_turn_moves_exact_steps_and_returns_only_in_position(drive, stage):
    emulator, _ = drive
    await stage.configure(STEADY, timeout_s=5.0)
    polled_before = len(emulator.status_answers)
    await stage.move_by(90.0, timeout_s=10.0)
    assert emulator.position == STEPS_PER_REV // 4 and not emulator.moving
    assert emulator.commands[emulator.commands.index("FL") - 1] == f"DI{STEPS_PER_REV // 4}"
    seen = emulator.status_answers[polled_before:]
    assert any(status & SC_MOVING for status in seen), "SC was never polled while moving"
    assert seen[-1] & SC_IN_POSITION and not seen[-1] & SC_MOVING


async def test_negative_and_fractional_moves_round_to_signed_steps(drive, stage):
    emulator, _ = drive
    await stage.configure(FAST, timeout_s=5.0)
    await stage.move_by(-45.5, timeout_s=10.0)
    assert emulator.position == round(-45.5 / 360 * STEPS_PER_REV) == -2528


async def test_motor_motion_turns_the_world_encoder_in_sub_steps(world):
    emulator = SclDriveEmulator(world=world)
    stage = _stage(await emulator.start())
    deltas: list[int] = []
    world.on_encoder(deltas.append)
    try:
        await stage.connect(timeout_s=5.0)
        await stage.configure(STEADY, timeout_s=5.0)
        await stage.move_by(90.0, timeout_s=10.0)
        assert world.encoder_count == world.encoder_counts_per_rev // 4
        assert len(deltas) > 4, "the line camera needs the encoder to advance during the move"
        for _ in range(3):
            await stage.move_by(90.0, timeout_s=10.0)
        assert world.encoder_count == world.encoder_counts_per_rev and world.angle_deg == 0.0
    finally:
        await stage.close()
        await emulator.close()


async def test_home_turns_forward_to_the_encoder_index_and_zeroes_the_position(world):
    emulator = SclDriveEmulator(world=world)
    stage = _stage(await emulator.start(), "&home=X5R")
    try:
        await stage.connect(timeout_s=5.0)
        await stage.configure(FAST, timeout_s=5.0)
        await stage.move_by(100.0, timeout_s=10.0)
        before = world.encoder_count
        await stage.home(timeout_s=10.0)
        assert world.encoder_count > before and world.encoder_count % world.encoder_counts_per_rev == 0
        assert emulator.position == 0 and emulator.commands[-2:] == ["SC", "SP0"]
        assert "SHX5R" in emulator.commands
    finally:
        await stage.close()
        await emulator.close()


async def test_home_polls_until_the_homing_bit_clears(drive, stage):
    emulator, _ = drive
    await stage.configure(FAST, timeout_s=5.0)
    await stage.move_by(90.0, timeout_s=10.0)
    polled_before = len(emulator.status_answers)
    await stage.home(timeout_s=10.0)
    seen = emulator.status_answers[polled_before:]
    assert any(status & SC_HOMING for status in seen) and not seen[-1] & SC_HOMING
    assert emulator.position == 0 and not emulator.moving


async def test_alarm_during_a_move_raises_stage_alarm_naming_the_alarms(drive, stage):
    emulator, _ = drive
    await stage.configure(STEADY, timeout_s=5.0)
    move = asyncio.create_task(stage.move_by(360.0, timeout_s=10.0))
    await _until(lambda: emulator.position > 0 or move.done())  # turning
    emulator.inject_alarm(OVER_TEMPERATURE | OPEN_WINDING)
    with pytest.raises(StageAlarm) as caught:
        await move
    assert caught.value.alarms == ["over-temperature", "open winding"]
    assert "over-temperature" in str(caught.value) and "open winding" in str(caught.value)
    assert isinstance(caught.value, DriverIOError)
    assert 0 < emulator.position < STEPS_PER_REV, "the drive stopped mid-move"


async def test_fault_without_alarm_code_raises_stage_fault(drive, stage):
    emulator, _ = drive
    await stage.configure(STEADY, timeout_s=5.0)
    move = asyncio.create_task(stage.move_by(360.0, timeout_s=10.0))
    await _until(lambda: emulator.position > 0 or move.done())  # turning
    emulator.inject_fault(True)
    with pytest.raises(StageFault, match="fault"):
        await move


async def test_move_past_its_timeout_stops_the_drive_and_times_out(drive, stage):
    emulator, _ = drive
    await stage.configure(STEADY, timeout_s=5.0)
    with pytest.raises(DriverTimeout, match="360 deg move not done"):
        await stage.move_by(360.0, timeout_s=0.2)
    assert emulator.commands[-1] == "SK" and not emulator.moving


async def test_out_of_range_speed_is_a_driver_init_error_naming_the_command(drive, stage):
    too_fast = MotionSettings.model_construct(speed_rps=500.0, accel_rps2=20.0, settle_ms=0.0)
    with pytest.raises(DriverInitError, match=r"VE500.*command VE.*'500'.*\?5 parameter out of range"):
        await stage.configure(too_fast, timeout_s=5.0)


async def test_silent_drive_times_out_within_the_timeout_and_recovers(drive, stage):
    emulator, path = drive
    await stage.configure(FAST, timeout_s=5.0)
    emulator.set_mute(True)
    started = time.monotonic()
    with pytest.raises(DriverTimeout, match=path):
        await stage.move_by(90.0, timeout_s=0.5)
    assert time.monotonic() - started < 3.0
    emulator.set_mute(False)
    await stage.move_by(90.0, timeout_s=10.0)
    assert emulator.position == STEPS_PER_REV // 4 and stage.reconnects == 0


async def test_connect_to_a_silent_drive_times_out_naming_the_port(drive):
    emulator, path = drive
    emulator.set_mute(True)
    stage = _stage(path)
    with pytest.raises(DriverTimeout, match=path):
        await stage.connect(timeout_s=0.5)
    await stage.close()


@pytest.mark.parametrize("garbage", [b"\xfe\x00garbage\r", b"SC=zz\r", b"garbage without end"])
async def test_garbage_answer_is_an_io_error_showing_the_garbage(drive, stage, garbage):
    emulator, _ = drive
    emulator.send_garbage(garbage)
    with pytest.raises(DriverIOError) as caught:
        await stage.move_by(90.0, timeout_s=5.0)
    assert repr(garbage.rstrip(b"\r"))[2:-1] in str(caught.value)
    await stage.move_by(90.0, timeout_s=10.0)  # the next exchange is clean again


async def test_unplugged_port_fails_then_replug_reconnects_once(drive, stage):
    emulator, _ = drive
    await stage.configure(FAST, timeout_s=5.0)
    emulator.unplug()
    with pytest.raises(DriverIOError) as lost:
        await stage.move_by(90.0, timeout_s=5.0)
    assert not isinstance(lost.value, DriverTimeout)
    with pytest.raises(DriverIOError, match="reconnecting failed"):
        await stage.move_by(90.0, timeout_s=5.0)  # still unplugged: one reopen attempt, no luck
    assert stage.reconnects == 0
    await emulator.replug()
    sent_before = len(emulator.commands)
    await stage.move_by(90.0, timeout_s=10.0)
    assert stage.reconnects == 1 and emulator.position == STEPS_PER_REV // 4
    assert emulator.commands[sent_before : sent_before + 9] == [
        "PR4",
        "MV",
        "AR",
        "AL",
        f"EG{STEPS_PER_REV}",
        "ME",
        "VE5",
        "AC200",
        "DE200",
    ]


async def test_close_disables_the_drive_and_is_safe_twice(drive, stage):
    emulator, _ = drive
    await stage.close()
    await stage.close()
    assert emulator.commands[-1] == "MD" and not emulator.enabled
    with pytest.raises(DriverIOError, match="closed"):
        await stage.move_by(90.0, timeout_s=1.0)


async def test_calls_before_connect_fail_clearly(drive):
    _, path = drive
    stage = _stage(path)
    with pytest.raises(DriverIOError, match="not connected"):
        await stage.move_by(90.0, timeout_s=1.0)
    await stage.close()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("serial:///dev/ttyUSB0?baud=1234", "baud.*9600, 19200"),
        ("serial:///dev/ttyUSB0?steps_per_rev=12", "steps_per_rev.*200"),
        ("serial:///dev/ttyUSB0?home=3Q", "home"),
        ("serial:///dev/ttyUSB0?poll_ms=fast", "poll_ms"),
        ("serial:///dev/ttyUSB0?speed=3", "speed.*options: baud, steps_per_rev, home, poll_ms"),
        ("serial://?baud=9600", "no port"),
    ],
)
def test_bad_url_options_are_driver_init_errors_naming_the_option(url, named):
    with pytest.raises(DriverInitError, match=named):
        SclStage(DeviceUrl.parse(url), {})


def test_socket_urls_reach_a_tcp_serial_server():
    assert SclStage(DeviceUrl.parse("socket://127.0.0.1:7001"), {}).port == "socket://127.0.0.1:7001"
    assert SclStage(DeviceUrl.parse("serial:///dev/ttyUSB0?baud=9600"), {}).port == "/dev/ttyUSB0"


async def test_emulator_process_prints_ready_and_serves_until_sigterm():
    async with emulator_process("scl_drive", "--steps-per-rev", "400") as path:
        stage = SclStage(DeviceUrl.parse(f"serial://{path}?steps_per_rev=400"), {})
        await stage.connect(timeout_s=5.0)
        await stage.configure(FAST, timeout_s=5.0)
        await stage.move_by(90.0, timeout_s=10.0)
        await stage.close()
