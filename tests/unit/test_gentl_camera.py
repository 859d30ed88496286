"""The GenTL camera driver through harvesters against a real GenTL producer from PyPI.

The `genicam` wheel ships viky.cti: three free-running devices (serials '0'..'2'),
Width/Height 100..800, RGBa8/Mono8, AcquisitionFrameRate, and no trigger, exposure or gain
features, so the driver runs with strict=false here (those features are skipped). The
software trigger runs against TLSimu.cti from the genicam 1.5.0 wheel (tests/data/tlsimu.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import genicam
import numpy as np
import pytest

from cellctl.drivers import DeviceUrl, DriverInitError, DriverTimeout
from cellctl.drivers.camera import FrameCameraSettings
from cellctl.drivers.camera.gentl import GenTLFrameCamera, list_devices
from tests.data.tlsimu import tlsimu_cti

VIKY = Path(genicam.__file__).parent / "viky.cti"
T_S = 10.0  # generous: producer calls on 2 loaded cores
SMALL_MONO = FrameCameraSettings(pixel_format="Mono8", width_px=320, height_px=240)


@pytest.fixture
async def camera():
    cams: list[GenTLFrameCamera] = []
    context: dict = {}

    async def make(query: str = "serial=1&strict=false") -> GenTLFrameCamera:
        cam = GenTLFrameCamera(DeviceUrl.parse(f"gentl://{VIKY}?{query}"), context)
        cams.append(cam)
        await cam.connect(10)
        return cam

    yield make
    for cam in cams:
        await cam.close()


async def test_producer_lists_its_devices():
    assert VIKY.is_file(), "genicam 1.6 ships viky.cti next to genicam/__init__.py"
    devices = await list_devices(str(VIKY))
    assert sorted(d["serial"] for d in devices) == ["0", "1", "2"]
    assert all(d["model"] == "Viky" for d in devices)


async def test_unknown_serial_names_the_devices_found(camera):
    with pytest.raises(DriverInitError) as err:
        await camera("serial=nope&strict=false")
    assert "serial=0" in str(err.value) and "serial=2" in str(err.value)


async def test_selected_camera_delivers_frames_in_the_configured_format(camera):
    cam = await camera()
    await cam.configure(SMALL_MONO, T_S)
    await cam.start(T_S)
    await cam.trigger(T_S)
    frame = await cam.grab(5)
    assert (frame.pixel_format, frame.data.shape, frame.data.dtype) == ("Mono8", (240, 320), np.uint8)
    assert frame.complete and cam.state == "acquiring"


async def test_rgba_frames_are_delivered_as_rgb8(camera):
    cam = await camera("serial=2&strict=false")
    await cam.configure(FrameCameraSettings(pixel_format="Mono8", width_px=160, height_px=120), T_S)
    node_map = cam._ia.remote_device.node_map  # viky's RGBa8 is not a profile format: set it directly
    await cam._host.run(setattr, node_map.PixelFormat, "value", "RGBa8")
    await cam.start(T_S)
    frame = await cam.grab(5)
    assert frame.pixel_format == "RGB8" and frame.data.shape == (120, 160, 3)
    assert frame.data.flags["C_CONTIGUOUS"]


async def test_frames_are_copies_that_later_buffers_do_not_overwrite(camera):
    cam = await camera()
    await cam.configure(SMALL_MONO, T_S)
    await cam.start(T_S)
    first = await cam.grab(5)
    snapshot = first.data.copy()
    later = [await cam.grab(5) for _ in range(6)]  # more than num_buffers: buffers are reused
    assert first.data.flags["OWNDATA"] and np.array_equal(first.data, snapshot)
    assert len({f.frame_id for f in [first, *later]}) == 7


async def test_bad_feature_value_is_rejected_with_camera_feature_value_and_range(camera):
    cam = await camera()
    with pytest.raises(DriverInitError) as err:
        await cam.configure(FrameCameraSettings(pixel_format="Mono8", width_px=2464, height_px=240), T_S)
    assert str(err.value).startswith("camera 1: Width = 2464 refused; allowed: 100 .. 800")
    with pytest.raises(DriverInitError, match="PixelFormat = 'BayerRG8' refused; allowed: one of RGBa8, Mono8"):
        await cam.configure(FrameCameraSettings(pixel_format="BayerRG8", width_px=320, height_px=240), T_S)


async def test_strict_mode_refuses_a_device_without_the_profile_features(camera):
    cam = await camera("serial=0")
    with pytest.raises(DriverInitError, match="feature ExposureTime does not exist"):
        await cam.configure(SMALL_MONO, T_S)


async def test_silent_camera_times_out_and_is_rebuilt(camera):
    cam = await camera()
    await cam.configure(SMALL_MONO, T_S)
    await cam._host.run(setattr, cam._ia.remote_device.node_map.AcquisitionFrameRate, "value", 1.0)
    await cam.start(T_S)
    await cam.grab(5)
    with pytest.raises(DriverTimeout, match=r"no frame within 0\.05 s"):
        await cam.grab(0.05)
    assert cam.missed == 1
    await _until(lambda: cam.rebuilds == 1 and cam.state == "acquiring")
    assert (await cam.grab(5)).data.shape == (240, 320)


async def test_camera_recovers_after_its_acquirer_is_destroyed_under_it(camera):
    cam = await camera()
    await cam.configure(SMALL_MONO, T_S)
    await cam.start(T_S)
    await cam.grab(5)
    await cam._host.run(cam._ia.destroy)  # what a lost device does to the fetch
    await _until(lambda: cam.rebuilds == 1 and cam.state == "acquiring")
    frame = await cam.grab(5)
    assert frame.data.shape == (240, 320) and frame.pixel_format == "Mono8"  # configuration re-applied


async def _until(condition, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


def test_devices_command_lists_a_producer_and_finds_the_configured_camera(profiles_copy, capsys):
    from cellctl.cli import main as cli

    assert cli(["devices", "--cti", str(VIKY), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [c["serial"] for c in listing["cameras"]] == ["0", "1", "2"]
    assert {c["access_status"] for c in listing["cameras"]} <= {"readwrite", "unknown"}

    config = profiles_copy / "cell-sim.yaml"
    text = config.read_text().replace(
        'frame_camera: {url: "sim://"}', f'frame_camera: {{url: "gentl://{VIKY}?serial=2&strict=false"}}'
    )
    text = text.replace('"emulator://scl?steps_per_rev=20000"', '"sim://"').replace(
        '"emulator://gardasoft"', '"sim://"'
    )
    config.write_text(text)
    assert cli(["devices", "--config", str(config), "--json"]) == 0
    report = {e["device"]: e for e in json.loads(capsys.readouterr().out)}
    assert report["frame_camera"]["state"] == "found"
    assert [c["serial"] for c in report["frame_camera"]["matched"]] == ["2"]
    assert report["stage"]["state"] == "connected"


@pytest.fixture(scope="session")
def tlsimu() -> Path:
    return tlsimu_cti()


async def test_software_trigger_gives_one_frame_per_trigger(tlsimu):
    cam = GenTLFrameCamera(DeviceUrl.parse(f"gentl://{tlsimu}?serial=SN_InterfaceA_0&strict=false"), {})
    try:
        await cam.connect(10)
        await cam.configure(FrameCameraSettings(pixel_format="BayerRG8", width_px=512, height_px=512), T_S)
        await cam.start(T_S)
        await asyncio.sleep(0.5)
        assert cam.frames == 0  # TriggerMode On, source Software: nothing until triggered
        for _ in range(3):
            await cam.trigger(T_S)
            frame = await cam.grab(5)
            # TLSimuMono accepts PixelFormat=BayerRG8 but delivers Mono8 buffers: the frame
            # carries what the buffer says, which is what the host must convert from
            assert (frame.pixel_format, frame.data.shape) == ("Mono8", (512, 512))
        await asyncio.sleep(0.3)
        assert cam.frames == 3 and cam.missed == 0
        node_map = cam._ia.remote_device.node_map
        assert node_map.PixelFormat.value == "BayerRG8"
        assert (node_map.TriggerMode.value, node_map.TriggerSource.value) == ("On", "Software")
    finally:
        await cam.close()
