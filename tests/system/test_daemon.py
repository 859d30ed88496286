"""`cellctl run` as a process: real signals, a real robot-bridge socket with CURVE (the cell's
key made by `cellctl keys generate`), records on disk, the serial drivers on the ptys of
emulator processes.

Nothing here places a part in the fixture or couples the drive to the simulated cameras, so
the cell must say RECHECK, never PASS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import serial
import yaml
import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from cellctl.link.protocol import Ack, Heartbeat, Part, encode
from cellctl.outcome import Bin
from tests.conftest import passing_copy, with_promotion

BRIDGE_PUBLIC, BRIDGE_SECRET = zmq.curve_keypair()


@pytest.fixture
def cell_config(profiles_copy, tmp_path, emulators):
    """The sim cell run by `cellctl run`: sim cameras, the serial drivers on emulator ptys, the
    cell's CURVE certificate made by `cellctl keys generate`, the test bridge's key pinned."""
    done = subprocess.run(
        [sys.executable, "-m", "cellctl", "keys", "generate", "cell", "--dir", str(tmp_path / "keys")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path = profiles_copy / "cell-sim.yaml"
    text = path.read_text()
    text = text.replace("bridge_public_key: null", f'bridge_public_key: "{BRIDGE_PUBLIC.decode()}"')
    text = text.replace("secret_key_file: cell.key_secret", f"secret_key_file: {tmp_path / 'keys' / 'cell.key_secret'}")
    text = text.replace("tcp://127.0.0.1:5560", f"ipc://{tmp_path / 'bridge.sock'}")
    text = text.replace("/var/lib/cellctl/records.db", str(tmp_path / "records.db"))
    text = text.replace('"sim://"', '"sim://?time_scale=0"')
    text = text.replace("emulator://scl?", f"serial://{emulators['scl_drive']}?")
    text = text.replace("emulator://gardasoft", f"serial://{emulators['gardasoft']}")
    text = text.replace("strip_s: 5", "strip_s: 1")
    assert "emulator://" not in text
    path.write_text(text)
    return path


@dataclass
class Bridge:
    """A hand-driven bridge: CURVE server, the cell's key allowed through ZAP, heartbeats
    answered (the cell requests no part before it hears the bridge); every other message
    queued for the test."""

    sock: zmq.asyncio.Socket
    inbox: asyncio.Queue[tuple[bytes, dict]]
    # messages taken off the inbox while waiting for another type: the cell sends its next
    # `ready` and a replayed `verdict` in either order, and a wait must not swallow the other
    held: list[tuple[bytes, dict]] = field(default_factory=list)

    async def send(self, identity: bytes, message: Part | Ack) -> None:
        await self.sock.send_multipart([identity, encode(message)])

    def drain(self) -> None:
        self.held.clear()
        while not self.inbox.empty():
            self.inbox.get_nowait()


@pytest.fixture
async def bridge(tmp_path, cell_config):
    ctx = zmq.asyncio.Context()
    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(tmp_path / "keys"))  # cell.key: the allow-list
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = BRIDGE_PUBLIC, BRIDGE_SECRET
    sock.bind(f"ipc://{tmp_path / 'bridge.sock'}")
    bridge = Bridge(sock, asyncio.Queue())
    beat = encode(Heartbeat(sender="test-bridge", boot_id="tb1"))

    async def serve() -> None:
        while True:
            identity, raw = await sock.recv_multipart()
            message = json.loads(raw)
            if message["type"] == "heartbeat":
                await sock.send_multipart([identity, beat])
            else:
                bridge.inbox.put_nowait((identity, message))

    task = asyncio.create_task(serve())
    yield bridge
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sock.close(linger=0)
    auth.stop()
    ctx.term()


async def _start(cell_config, tmp_path, name):
    with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cellctl",
            "run",
            "--config",
            str(cell_config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )


async def _next(bridge: Bridge, wanted: str, timeout_s: float = 60.0) -> tuple[bytes, dict]:
    """The first message of type ``wanted``, held ones first; others are held, in order."""
    for k, (identity, message) in enumerate(bridge.held):
        if message["type"] == wanted:
            del bridge.held[k]
            return identity, message
    async with asyncio.timeout(timeout_s):
        while True:
            identity, message = await bridge.inbox.get()
            if message["type"] == wanted:
                return identity, message
            bridge.held.append((identity, message))


def _events(tmp_path, name) -> list[dict]:
    text = (tmp_path / f"{name}.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def _logged(tmp_path, name, event: str, timeout_s: float = 60.0) -> dict:
    """Wait until the daemon's log has ``event`` (polling its file: the daemon writes it)."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = [e for e in _events(tmp_path, name) if e["event"] == event]
            if found:
                return found[-1]
            await asyncio.sleep(0.05)


def light_status(pty: str) -> str:
    """What the Gardasoft emulator says channel 1 does (``ST``), asked through its pty."""
    with serial.Serial(pty, 115200, timeout=0.2) as port:
        port.reset_input_buffer()
        port.write(b"ST\r")
        answer = b""
        for _ in range(50):
            answer += port.read(256)
            if answer.endswith(b">"):
                break
    return answer.decode()


def light_is_off(pty: str) -> bool:
    return "CH1 RS S0%" in light_status(pty)


def _rows(tmp_path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        return db.execute("SELECT seq, ack_state FROM inspections").fetchall()


async def _stop(proc, tmp_path, name) -> None:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        code = await proc.wait()
    assert code == 0, (tmp_path / f"{name}.log").read_text()[-2000:]


async def test_empty_fixture_is_recheck_and_unacknowledged_verdict_is_resent_after_restart(
    cell_config, bridge, tmp_path
):
    first = await _start(cell_config, tmp_path, "first")
    try:
        identity, ready = await _next(bridge, "ready")
        await bridge.send(identity, Part(request_id=ready["request_id"], part_id="A17-0042"))
        _, verdict = await _next(bridge, "verdict")  # not acknowledged: the robot is 'down'
        assert verdict["part_id"] == "A17-0042" and verdict["seq"] == 1
        assert verdict["request_id"] == ready["request_id"] and verdict["boot_id"] == ready["boot_id"]
        # The drive runs in its own process, so no encoder clocks the simulated line-scan
        # camera: the strip never completes. Whatever the fault, never PASS.
        assert verdict["verdict"] == "RECHECK" and verdict["bin"] == 3
        assert verdict["reason"].startswith("strip: ")
    finally:
        await _stop(first, tmp_path, "first")

    bridge.drain()  # resends of the first run
    second = await _start(cell_config, tmp_path, "second")
    try:
        identity, replayed = await _next(bridge, "verdict")
        assert replayed == verdict  # the same message, from the records, boot id of the first run
        ack = Ack(cell_id=verdict["cell_id"], boot_id=verdict["boot_id"], seq=1, bin=Bin.RECHECK)
        async with asyncio.timeout(10):
            while _rows(tmp_path) != [(1, "acked")]:
                await bridge.send(identity, ack)
                await asyncio.sleep(0.2)
    finally:
        await _stop(second, tmp_path, "second")
    log_lines = [
        json.loads(line) for line in (tmp_path / "second.log").read_text().splitlines() if line.startswith("{")
    ]
    assert any(e["event"] == "verdict.replay" and e["seq"] == 1 for e in log_lines)


async def test_broken_config_fails_start_with_file_and_line(profiles_copy, tmp_path):
    path = profiles_copy / "cell-sim.yaml"
    path.write_text(path.read_text().replace("inference_threads: 2", "inference_threads: zero"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cellctl", "run", "--config", str(path), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert f"{path}:" in err.decode() and "inference_threads" in err.decode()


def switch_light_on(pty: str) -> None:
    """As a killed daemon or a hand at the controller would leave it."""
    with serial.Serial(pty, 115200, timeout=0.2) as port:
        port.write(b"RS1,80\r")
        port.read(16)
    assert "CH1 RS S80%" in light_status(pty)


async def test_camera_feature_the_device_refuses_stops_the_start_with_camera_feature_value_and_range(
    cell_config, tmp_path, emulators
):
    import genicam

    switch_light_on(emulators["gardasoft"])

    viky = f"{genicam.__file__.rsplit('/', 1)[0]}/viky.cti"
    cell_config.write_text(
        cell_config.read_text().replace(
            'frame_camera: {url: "sim://?time_scale=0"}',
            f'frame_camera: {{url: "gentl://{viky}?serial=1&strict=false"}}',
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cellctl", "run", "--config", str(cell_config), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 3
    assert "camera 1: PixelFormat = 'BayerRG8' refused; allowed: one of RGBa8, Mono8" in err.decode()
    assert light_is_off(emulators["gardasoft"])  # a failed start leaves the UV off too


async def test_run_refuses_emulator_devices_and_says_how_to_serve_them(profiles_copy):
    path = profiles_copy / "cell-sim.yaml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cellctl", "run", "--config", str(path), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "emulator://scl" in t)
    assert f"{path}:{line}: devices.stage.url: emulator:// is served by `cellctl sim` only" in err.decode()


async def test_devices_reports_the_identity_of_each_serial_device(cell_config):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cellctl",
        "devices",
        "--config",
        str(cell_config),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    report = {e["device"]: e for e in json.loads(out)}
    assert report["stage"]["state"] == "connected" and "107M062" in report["stage"]["identity"]
    assert report["lighting"]["state"] == "connected" and report["lighting"]["identity"].startswith("RT")
    assert report["frame_camera"]["identity"] == "simulated"


async def test_a_part_killed_mid_inspection_is_judged_interrupted_at_the_next_start_and_its_seq_not_reused(
    cell_config, bridge, tmp_path, emulators
):
    first = await _start(cell_config, tmp_path, "first")
    try:
        identity, ready = await _next(bridge, "ready")
        assert ready["accepted"] is None
        await bridge.send(identity, Part(request_id=ready["request_id"], part_id="K-1"))
        accepted = await _logged(tmp_path, "first", "part.accepted")
        assert accepted["part_id"] == "K-1" and accepted["seq"] == 1
    finally:
        first.kill()  # SIGKILL: no handler runs, the light may stay on
        await first.wait()

    bridge.drain()
    switch_light_on(emulators["gardasoft"])  # as the killed run may have left it
    second = await _start(cell_config, tmp_path, "second")
    try:
        identity, verdict = await _next(bridge, "verdict")
        assert verdict["part_id"] == "K-1" and verdict["seq"] == 1
        assert verdict["verdict"] == "RECHECK" and verdict["reason"].startswith("interrupted: ")
        assert verdict["boot_id"] != ready["boot_id"]  # judged by the second run
        await bridge.send(identity, Ack(cell_id=verdict["cell_id"], boot_id=verdict["boot_id"], seq=1, bin=Bin.RECHECK))
        _, ready = await _next(bridge, "ready")
        assert ready["accepted"] == "K-1"  # the robot may take K-1 out: the cell has it
        assert light_is_off(emulators["gardasoft"])  # switched off at start, whatever the killed run left
        await bridge.send(identity, Part(request_id=ready["request_id"], part_id="K-2"))
        _, verdict = await _next(bridge, "verdict")
        assert verdict["part_id"] == "K-2" and verdict["seq"] == 2  # never the killed part's seq
    finally:
        await _stop(second, tmp_path, "second")
    assert light_is_off(emulators["gardasoft"])
    assert any(e["event"] == "part.interrupted" and e["seq"] == 1 for e in _events(tmp_path, "second"))


async def test_sighup_reloads_the_profiles_and_a_bad_edit_keeps_the_old_set(
    cell_config, bridge, tmp_path, profiles_copy, emulators
):
    proc = await _start(cell_config, tmp_path, "run")
    try:
        identity, ready = await _next(bridge, "ready")
        profile = profiles_copy / "m8x40-hex.yaml"
        good = profile.read_text()
        profile.write_text(good.replace("threshold: 0.5", "threshold: 7"))
        proc.send_signal(signal.SIGHUP)
        refused = await _logged(tmp_path, "run", "profiles.reload_refused")
        assert f"{profile}:" in refused["problem"] and "decision.threshold" in refused["problem"]
        proc.send_signal(signal.SIGUSR1)  # ignored, not fatal
        await _logged(tmp_path, "run", "signal.ignored")
        await bridge.send(identity, Part(request_id=ready["request_id"], part_id="H-1"))
        _, verdict = await _next(bridge, "verdict")  # the old set still inspects
        assert verdict["part_id"] == "H-1"
        profile.write_text(good.replace("threshold: 0.5", "threshold: 0.6"))
        proc.send_signal(signal.SIGHUP)
        await _logged(tmp_path, "run", "profiles.reloaded")
        assert proc.returncode is None
    finally:
        await _stop(proc, tmp_path, "run")
    assert light_is_off(emulators["gardasoft"])


async def test_a_promoted_model_judges_the_next_part_after_sighup(
    cell_config, bridge, tmp_path, profiles_copy, package
):
    """`cellctl promote` rewrites the profile while the daemon runs; `systemctl reload` (SIGHUP)
    takes it between parts; each verdict and record names the model that judged it."""
    profile = with_promotion(profiles_copy / "m8x40-hex.yaml", speed_tolerance=10)  # timing noise is not under test
    old = yaml.safe_load(profile.read_text())["model"]["sha256"]
    good = passing_copy(package, tmp_path / "candidate")
    proc = await _start(cell_config, tmp_path, "run")
    try:
        identity, ready = await _next(bridge, "ready")
        await bridge.send(identity, Part(request_id=ready["request_id"], part_id="P-1", profile="m8x40-hex"))
        _, first = await _next(bridge, "verdict")
        assert first["part_id"] == "P-1" and first["model_sha256"] == old
        await bridge.send(identity, Ack(cell_id=first["cell_id"], boot_id=first["boot_id"], seq=1, bin=Bin.RECHECK))
        _, ready = await _next(bridge, "ready")
        promote = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cellctl", "promote", str(good), "--profile", str(profile), "--rounds", "3",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await promote.communicate()
        assert promote.returncode == 0, out.decode()
        new = yaml.safe_load(profile.read_text())["model"]["sha256"]
        assert new == json.loads((good / "card.json").read_text())["models"]["int8"]["sha256"] != old
        proc.send_signal(signal.SIGHUP)
        await _logged(tmp_path, "run", "profiles.reloaded")
        await bridge.send(identity, Part(request_id=ready["request_id"], part_id="P-2", profile="m8x40-hex"))
        _, second = await _next(bridge, "verdict")
        assert second["part_id"] == "P-2" and second["model_sha256"] == new
    finally:
        await _stop(proc, tmp_path, "run")
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        rows = dict(db.execute("SELECT part_id, model_sha256 FROM inspections").fetchall())
    assert rows == {"P-1": old, "P-2": new}  # the earlier verdict keeps the model that made it
