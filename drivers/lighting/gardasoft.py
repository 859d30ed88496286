"""Gardasoft RT-series lighting controller (drives the UV LED bar) over RS-232 or Ethernet.

URL: ``serial:///dev/ttyUSB1?baud=115200`` (location = port path; a stable
``/dev/serial/by-id/...`` link is best, reconnection reopens the same path) or
``socket://host:30313`` (Ethernet models speak the same text on TCP 30313).
Options:

- ``baud``: 9600, 19200, 38400, 57600 or 115200 (default 115200, the controller's default).

Wire protocol (cell.md section 4): a command ends with CR, every reply ends with the prompt
``>`` and the next command waits for it; an accepted command answers ``>`` (or data, then
``>``), a refused one ``Err n`` then ``>``. ``RSc,s`` continuous, ``RTc,p,d,s`` pulse,
``VR`` version, ``ST`` status.

configure() only remembers and checks the settings: nothing is sent until on(), which sends
the whole channel setup (RS or RT) each time, so a controller that lost its state (power
cycle, replugged adapter) is set up again by the next on(). Every reply is checked; a clipped
value (Err 5) is an error too, because the light is then not what the profile asked for.

Deadlines: on() and off() end within their ``timeout_s``; on() includes the profile's
``warmup_s`` (a warm-up that cannot fit is a DriverTimeout before anything is switched).
close() switches off and releases the port within ``CLOSE_TIMEOUT_S`` even if the controller
is silent or gone, and never raises.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import structlog
from pydantic import Field

from cellctl.drivers.errors import DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.lighting import LightingSettings, overdrive_problem
from cellctl.drivers.registry import DeviceUrl
from cellctl.drivers.serial_link import Baud, SerialLink, serial_port
from cellctl.drivers.settings import SettingsModel

log = structlog.get_logger("cellctl.drivers.lighting.gardasoft")

PROMPT = b">"
CLOSE_TIMEOUT_S = 2.0  # close() has no caller deadline: switch-off plus releasing the port
CLOSE_OFF_S = 1.0  # of which the switch-off (waiting for a running command included) gets this
MIN_STEP_S = 0.05  # a step that starts at its deadline still gets one chance to answer
CHANNELS = (1, 4)  # RT-series controllers have up to 4 outputs; fewer answer Err 1
ERROR_MEANINGS = {
    1: "bad value",
    2: "unknown command",
    3: "number format",
    4: "wrong parameter count",
    5: "value clipped",
}
ERR_RE = re.compile(r"Err\s*(\d+)")
# the overdrive limits live in ONE table (drivers/lighting/_limits.py), shared with the
# profile model and the emulator


class LightingError(DriverIOError):
    """The controller refused a command with ``Err n`` (``code`` = n)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class GardasoftOptions(SettingsModel):
    """URL options of the Gardasoft backend."""

    baud: Baud = Field(default=115200, description="RS-232 baud rate set on the controller")


def check_limits(settings: LightingSettings) -> None:
    """Raise DriverInitError if the settings exceed the controller's overdrive limits."""
    ch = settings.channel
    if not CHANNELS[0] <= ch <= CHANNELS[1]:
        raise DriverInitError(f"gardasoft: channel {ch} does not exist (allowed 1-4)")
    problem = overdrive_problem(settings.mode, settings.intensity_pct, settings.pulse_width_ms)
    if problem is not None:
        raise DriverInitError(f"gardasoft channel {ch}: {problem}")


def _num(value: float) -> str:
    """A number as the controller reads it: plain decimals, no exponent, no trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


class GardasoftLighting:
    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self.port = serial_port(url, "gardasoft")
        self.options = url.options_as(GardasoftOptions, "gardasoft")
        self.name = f"gardasoft {self.port}"
        self.identity: str | None = None
        self.status: list[str] = []
        self.reconnects = 0
        self._settings = LightingSettings()
        self._link: SerialLink | None = None
        self._connected = False  # connect() succeeded: a lost port may be reopened
        self._closed = False
        self._lit = False  # what we last switched: on() succeeded and no off() since
        self._lock = asyncio.Lock()  # one public operation at a time (reconnect + command)

    async def connect(self, timeout_s: float) -> None:
        """Open the port, read the version (``VR``) and status (``ST``)."""
        async with self._lock:
            if self._closed:
                raise DriverIOError(f"{self.name}: closed")
            if self._link is None:
                self._link = SerialLink(self.port, self.options.baud, self.name)
            deadline = time.monotonic() + timeout_s
            try:
                await self._handshake(deadline)
                self.status = await self._command("ST", deadline)
            except BaseException:
                await self._link.close()
                raise
            self._connected = True
            log.info("lighting.connected", port=self.port, identity=self.identity, status=self.status)

    async def configure(self, settings: LightingSettings, timeout_s: float) -> None:
        """Remember the channel setup after checking the overdrive limits; sends nothing (so
        ``timeout_s`` is never used up): on() sends it."""
        if self._closed:
            raise DriverIOError(f"{self.name}: closed")
        check_limits(settings)
        self._settings = settings

    async def on(self, timeout_s: float) -> None:
        """Switch the channel on (RS) or arm it (RT), then wait ``warmup_s``, all within ``timeout_s``."""
        s = self._settings
        check_limits(s)  # again: a model_construct()ed settings object skipped validation
        if s.warmup_s >= timeout_s:
            raise DriverTimeout(f"{self.name}: warm-up of {s.warmup_s:g} s does not fit in {timeout_s:g} s")
        if s.mode == "continuous":
            command = f"RS{s.channel},{_num(s.intensity_pct)}"
        else:
            command = f"RT{s.channel},{_num(s.pulse_width_ms)},{_num(s.pulse_delay_ms)},{_num(s.intensity_pct)}"
        await self._operate(command, timeout_s - s.warmup_s)
        self._lit = True
        if s.warmup_s > 0:
            await asyncio.sleep(s.warmup_s)  # LED output settles: part of the profile, not of I/O
        log.debug("lighting.on", port=self.port, command=command, warmup_s=s.warmup_s)

    async def off(self, timeout_s: float) -> None:
        """Switch the channel off (``RSc,0``, also ends pulse mode)."""
        await self._operate(f"RS{self._settings.channel},0", timeout_s)
        self._lit = False
        log.debug("lighting.off", port=self.port, channel=self._settings.channel)

    async def close(self) -> None:
        """Switch off (best effort) and release the port and its thread; never raises, safe
        to call twice, done within CLOSE_TIMEOUT_S."""
        if self._closed:
            return
        started = time.monotonic()
        if self._connected:
            try:
                # bounded as a whole: the lock may be held by a command to a silent controller
                async with asyncio.timeout(CLOSE_OFF_S):
                    await self.off(CLOSE_OFF_S)
            except (DriverIOError, TimeoutError) as exc:
                log.warning("lighting.off_failed_on_close", port=self.port, error=str(exc) or "timeout")
        self._closed = True
        link, self._link, self._connected = self._link, None, False
        if link is not None:
            await link.shutdown(max(CLOSE_TIMEOUT_S - (time.monotonic() - started), MIN_STEP_S))

    def health(self) -> dict[str, Any]:
        link = self._link
        return {
            "connected": bool(self._connected and link is not None and link.is_open),
            "lit": self._lit,
            "reconnects": self.reconnects,
            "identity": self.identity,
        }

    async def _operate(self, command: str, timeout_s: float) -> None:
        """Send one command; a vanished port is reopened once (VR handshake) before giving up."""
        async with self._lock:
            if self._closed:
                raise DriverIOError(f"{self.name}: closed")
            if self._link is None or not self._connected:
                raise DriverIOError(f"{self.name}: not connected (call connect() first)")
            deadline = time.monotonic() + timeout_s
            reopened = False
            if not self._link.is_open:  # lost in an earlier call
                await self._reconnect(deadline)
                reopened = True
            try:
                data = await self._command(command, deadline)
            except (DriverTimeout, LightingError):
                raise  # the port is fine: repeating would not help
            except DriverIOError:
                if reopened or self._link.is_open:
                    raise  # garbage on a live port, or the one reopen is spent
                await self._reconnect(deadline)
                data = await self._command(command, deadline)  # RS/RT set state: safe to repeat
            if data:
                raise DriverIOError(f"{self.name}: unexpected answer to {command!r}: {data!r}")

    async def _reconnect(self, deadline: float) -> None:
        assert self._link is not None
        log.warning("lighting.reconnecting", port=self.port)
        await self._handshake(deadline)
        self.reconnects += 1
        log.info("lighting.reconnected", port=self.port, identity=self.identity, reconnects=self.reconnects)

    async def _handshake(self, deadline: float) -> None:
        assert self._link is not None
        if not self._link.is_open:
            await self._link.open()
        version = await self._command("VR", deadline)
        identity = " ".join(version)
        if not version or not re.search(r"[A-Za-z]", identity) or not re.search(r"\d", identity):
            await self._link.close()
            raise DriverIOError(f"{self.name}: 'VR' answered {version!r}, not a controller version")
        self.identity = identity

    async def _command(self, command: str, deadline: float) -> list[str]:
        """One exchange: send ``command`` + CR, return the data lines before the prompt."""
        assert self._link is not None
        wire = command.encode("ascii") + b"\r"
        timeout_s = max(deadline - time.monotonic(), MIN_STEP_S)
        raw = await self._link.transact(wire, PROMPT, timeout_s)
        return self._parse(command, raw)

    def _parse(self, command: str, raw: bytes) -> list[str]:
        try:
            text = raw[: -len(PROMPT)].decode("ascii")
        except UnicodeDecodeError:
            raise DriverIOError(f"{self.name}: garbage in answer to {command!r}: {raw!r}") from None
        lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
        if lines and lines[0] == command:
            lines = lines[1:]  # a controller set to echo (terminal use) repeats the command
        for line in lines:
            if not line.isprintable():
                raise DriverIOError(f"{self.name}: garbage in answer to {command!r}: {raw!r}")
            match = ERR_RE.fullmatch(line)
            if match:
                code = int(match.group(1))
                meaning = ERROR_MEANINGS.get(code, "unknown error")
                raise LightingError(f"{self.name}: {command!r} refused: Err {code} ({meaning})", code)
        return lines
