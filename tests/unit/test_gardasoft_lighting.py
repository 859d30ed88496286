"""The Gardasoft lighting driver against the controller emulator, over a real pty and pyserial."""

from __future__ import annotations

import asyncio

import pytest

from cellctl.drivers import DeviceUrl, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.lighting import LightingSettings
from cellctl.drivers.lighting.gardasoft import GardasoftLighting, LightingError
from cellctl.drivers.serial_link import SerialLink
from cellctl.sim.gardasoft import GardasoftEmulator
from cellctl.sim.world import SimWorld
from tests.emulator_process import emulator_process

T_S = 2.0  # generous: 2 shared cores, other work running


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(time_scale=0.0)


@pytest.fixture
async def emulator(world, tmp_path):
    emu = GardasoftEmulator(world=world, link_dir=tmp_path)
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def light(emulator):
    driver = GardasoftLighting(DeviceUrl.parse(f"serial://{emulator.path}"), {})
    yield driver
    await driver.close()


def _switching(emulator: GardasoftEmulator) -> list[str]:
    return [c for c in emulator.commands if c.startswith(("RS", "RT"))]


async def test_connect_reads_the_version_and_status(light, emulator):
    await light.connect(T_S)
    assert light.identity == "RT420 V3.012"
    assert light.status[0].startswith("CH1")
    assert emulator.commands == ["VR", "ST"]


async def test_continuous_on_and_off_switch_the_uv_at_the_part(light, emulator, world):
    await light.connect(T_S)
    await light.configure(LightingSettings(channel=1, mode="continuous", intensity_pct=80), T_S)
    await light.on(T_S)
    assert emulator.commands[-1] == "RS1,80" and world.light_gain == pytest.approx(1.0)
    await light.off(T_S)
    assert emulator.commands[-1] == "RS1,0" and world.light_gain == 0.0


async def test_strobe_on_sends_width_delay_and_brightness(light, emulator, world):
    await light.connect(T_S)
    settings = LightingSettings(channel=2, mode="strobe", intensity_pct=150, pulse_width_ms=5, pulse_delay_ms=0.5)
    await light.configure(settings, T_S)
    await light.on(T_S)
    assert emulator.commands[-1] == "RT2,5,0.5,150"
    assert emulator.channels[2].mode == "strobe" and world.light_gain == pytest.approx(150 / 80)


async def test_dead_leds_stay_dark_while_the_controller_answers(light, emulator, world):
    world.faults.light_dead = True
    await light.connect(T_S)
    await light.on(T_S)
    assert emulator.commands[-1] == "RS1,80" and world.light_gain == 0.0


@pytest.mark.parametrize(
    ("mode", "pct", "width_ms", "range_text"),
    [
        ("strobe", 250.0, 20.0, "at most 10 ms"),
        ("strobe", 150.0, 60.0, "at most 50 ms"),
        ("continuous", 150.0, 10.0, "continuous 0-100 %"),
        ("strobe", 320.0, 5.0, "201-300 %"),
    ],
)
async def test_overdrive_beyond_the_limits_is_refused_before_sending(light, emulator, mode, pct, width_ms, range_text):
    await light.connect(T_S)
    # model_construct skips the settings' own validation: the driver must check again
    unsafe = LightingSettings.model_construct(
        channel=3, mode=mode, intensity_pct=pct, pulse_width_ms=width_ms, pulse_delay_ms=0.0, warmup_s=0.0
    )
    with pytest.raises(DriverInitError, match="channel 3") as refused:
        await light.configure(unsafe, T_S)
    assert f"{pct:g} %" in str(refused.value) and range_text in str(refused.value)
    assert _switching(emulator) == []


async def test_a_channel_the_controller_lacks_is_refused_with_err_1(world, tmp_path):
    emu = GardasoftEmulator(world=world, channels=2)
    driver = GardasoftLighting(DeviceUrl.parse(f"serial://{await emu.start()}"), {})
    try:
        await driver.connect(T_S)
        assert driver.identity == "RT220 V3.012"
        await driver.configure(LightingSettings(channel=4), T_S)
        with pytest.raises(LightingError, match=r"'RS4,80' refused: Err 1 \(bad value\)") as refused:
            await driver.on(T_S)
        assert refused.value.code == 1 and world.light_gain == 0.0
    finally:
        await driver.close()
        await emu.close()


async def test_a_clipped_value_is_an_error(light, emulator):
    await light.connect(T_S)
    emulator.send_garbage(b"Err 5\r\n>")  # a controller whose limits are stricter than ours
    with pytest.raises(LightingError, match=r"Err 5 \(value clipped\)") as refused:
        await light.on(T_S)
    assert refused.value.code == 5


async def test_the_emulator_clips_overdrive_and_reports_err_5(emulator):
    link = SerialLink(emulator.path, 115200, "raw")
    await link.open()
    try:
        assert await link.transact(b"RT1,20,0,250\r", b">", T_S) == b"Err 5\r\n>"
        assert emulator.channels[1].brightness_pct == 200.0
        assert await link.transact(b"RS1,40;XX;RS2,10\r", b">", T_S) == b"Err 2\r\n>"
        assert emulator.channels[1].brightness_pct == 40.0 and emulator.channels[2].brightness_pct == 0.0
        assert await link.transact(b"RS1,4x\r", b">", T_S) == b"Err 3\r\n>"
        assert await link.transact(b"RS1\r", b">", T_S) == b"Err 4\r\n>"
        assert await link.transact(b"RS9,10\r", b">", T_S) == b"Err 1\r\n>"
        assert await link.transact(b"RS1,50;TR1;AW;VR\r", b">", T_S) == b"RT420 V3.012\r\n>"
        assert emulator.saved is not None and emulator.saved[1].brightness_pct == 50.0
    finally:
        await link.shutdown()


async def test_a_reply_in_pieces_is_read_up_to_the_prompt(light, emulator):
    emulator.set_slow_replies(chunk_bytes=3, gap_s=0.02)
    await light.connect(T_S)
    assert light.identity == "RT420 V3.012"  # not cut at the first CR/LF
    await light.on(T_S)
    await light.off(T_S)
    assert _switching(emulator) == ["RS1,80", "RS1,0"]


async def test_a_silent_controller_times_out_naming_the_port(light, emulator):
    emulator.set_mute(True)
    with pytest.raises(DriverTimeout, match=emulator.path):
        await light.connect(0.3)


async def test_a_controller_that_fell_silent_serves_the_next_call(light, emulator, world):
    await light.connect(T_S)
    emulator.set_mute(True)
    with pytest.raises(DriverTimeout):
        await light.on(0.3)
    emulator.set_mute(False)
    await light.on(T_S)
    assert emulator.commands[-1] == "RS1,80" and world.light_gain == pytest.approx(1.0)


@pytest.mark.parametrize("garbage", [b"\x00\xfe\x13>", b"\x00\xfe\x13"])
async def test_garbage_is_reported_with_what_came_back(light, emulator, garbage):
    emulator.send_garbage(garbage)
    with pytest.raises(DriverIOError, match=r"\\x00\\xfe\\x13"):
        await light.connect(1.0)  # without a prompt it is a timeout that quotes what came


async def test_a_port_pulled_mid_run_fails_the_call(light, emulator):
    await light.connect(T_S)
    emulator.unplug()
    with pytest.raises(DriverIOError, match=emulator.path):
        await light.on(T_S)
    assert light.reconnects == 0


async def test_the_next_call_after_replug_reconnects_and_works(light, emulator, world):
    await light.connect(T_S)
    emulator.unplug()
    with pytest.raises(DriverIOError):
        await light.off(T_S)
    await emulator.replug()
    await light.on(T_S)
    assert light.reconnects == 1 and emulator.commands[-2:] == ["VR", "RS1,80"]
    assert world.light_gain == pytest.approx(1.0)


async def test_a_replug_between_calls_is_invisible_to_the_caller(light, emulator):
    await light.connect(T_S)
    await emulator.replug()
    await light.on(T_S)
    assert light.reconnects == 1 and emulator.commands[-1] == "RS1,80"


async def test_close_switches_off_and_is_safe_twice(light, emulator, world):
    await light.connect(T_S)
    await light.on(T_S)
    await light.close()
    assert emulator.commands[-1] == "RS1,0" and world.light_gain == 0.0
    await light.close()
    with pytest.raises(DriverIOError, match="closed"):
        await light.on(T_S)


async def test_close_after_a_lost_port_does_not_hang(light, emulator):
    await light.connect(T_S)
    emulator.unplug()
    await asyncio.wait_for(light.close(), 10)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("serial:///dev/ttyUSB1?baud=12345", r"baud='12345'.*115200"),
        ("serial:///dev/ttyUSB1?baud=fast", r"baud='fast'"),
        ("serial:///dev/ttyUSB1?parity=E", r"unknown option 'parity' \(allowed: baud\)"),
        ("serial://", r"not serial:///dev/<port>"),
    ],
)
def test_a_bad_url_is_refused_when_built(url, message):
    with pytest.raises(DriverInitError, match=message):
        GardasoftLighting(DeviceUrl.parse(url), {})


def test_url_options_select_the_baud_rate_and_socket_port():
    assert GardasoftLighting(DeviceUrl.parse("serial:///dev/ttyUSB1?baud=9600"), {}).options.baud == 9600
    assert GardasoftLighting(DeviceUrl.parse("socket://10.0.0.7:30313"), {}).port == "socket://10.0.0.7:30313"


async def test_the_emulator_process_serves_until_sigterm():
    async with emulator_process("gardasoft", "--channels", "2") as path:
        driver = GardasoftLighting(DeviceUrl.parse(f"serial://{path}"), {})
        try:
            await driver.connect(T_S)
            assert driver.identity == "RT220 V3.012"
        finally:
            await driver.close()
