"""Applied Motion Products stepper drive spoken to in SCL (Serial Command Language).

URL: ``serial://<port>[?baud=B&steps_per_rev=N&home=IC&poll_ms=MS]``, e.g.
``serial:///dev/ttyUSB0?baud=9600&steps_per_rev=20000``. The location is handed to pyserial,
so ``serial://socket://host:port`` style locations work, and ``socket://host:port`` reaches a
TCP serial server directly.

Options (``SclOptions``, unknown keys are errors):
- ``baud``: 9600 (the drive's power-up rate), 19200, 38400, 57600 or 115200; the driver
  never changes the drive's rate (``BR``), it must already match.
- ``steps_per_rev``: motor steps per revolution sent as ``EG``, 200..51200, default 20000.
- ``home``: the ``SH`` parameter, input and condition, default ``3F`` (input 3, falling edge).
- ``poll_ms``: interval of the ``SC`` status poll while moving, default 10.

Connect: ``PR4`` (acknowledgements: ``%`` executed, ``*`` queued, ``?n`` refused), ``MV``
(identity), ``AR``, ``AL`` (alarms that survive AR fail the connect), ``EG``, ``ME``. A move is
``DI<steps>`` + ``FL``, then ``SC`` polls until in position and not moving. After the port
vanishes (USB adapter unplugged) the next call reopens it once and repeats the handshake.

Deadlines: every call with ``timeout_s`` ends within it (each answer waits at most what is
left, at least ``MIN_STEP_S``); a move or homing not done in time is stopped (``SK``) and
raises DriverTimeout; the settle wait must fit too. After a StageAlarm the drive stays
disabled until home() (``AR``, ``AL``, ``ME`` before ``SH``) or connect() resets it; an alarm
that persists fails that call again. close() sends ``MD`` and releases the
port within ``CLOSE_TIMEOUT_S`` even if the drive is silent or gone.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import structlog
from pydantic import Field

from cellctl.drivers.errors import CellError, DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.registry import DeviceUrl
from cellctl.drivers.serial_link import Baud, SerialLink, serial_port
from cellctl.drivers.settings import SettingsModel
from cellctl.drivers.stage import MotionSettings, StageAlarm

__all__ = ["SclOptions", "SclStage", "StageAlarm", "StageFault", "decode_alarms"]

log = structlog.get_logger("cellctl.drivers.stage.scl")

ANSWER_TIMEOUT_S = 1.0  # one answer; a drive answers within ms, the rest is a loaded host
MIN_STEP_S = 0.05  # a step that starts at its deadline still gets one chance to answer
STOP_TIMEOUT_S = 0.3  # best-effort SK/MD: do not hold up the error that made us stop
ALARM_QUERY_S = 0.3  # AL after SC showed an alarm: worth asking even past the deadline, briefly
CLOSE_TIMEOUT_S = 2.0  # close(): MD plus releasing the port, whatever the drive does
CR = b"\r"

SC_ENABLED, SC_FAULT, SC_IN_POSITION, SC_MOVING = 1 << 0, 1 << 2, 1 << 3, 1 << 4
SC_ALARM, SC_HOMING = 1 << 9, 1 << 10
ALARM_NAMES = {
    0: "position limit",
    1: "CCW limit",
    2: "CW limit",
    3: "over-temperature",
    5: "over-voltage",
    6: "under-voltage",
    7: "over-current",
    8: "open winding",
    9: "bad encoder",
    10: "comm error",
}
REFUSALS = {"?5": "parameter out of range"}  # the only code the manual confirms
REFUSAL = re.compile(rb"\?\d*")


def decode_alarms(bits: int) -> list[str]:
    """AL bits to names, lowest bit first; bits the manual does not name become ``alarm bit N``."""
    return [ALARM_NAMES.get(bit, f"alarm bit {bit}") for bit in range(16) if bits >> bit & 1]


def _number(value: float) -> str:
    """Compact SCL number: ``1``, ``2.5``, ``0.0042`` (4 decimals is the drive's resolution)."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


class StageFault(DriverIOError):
    """The drive reports a fault (SC bit 2) without an alarm code."""


class SclOptions(SettingsModel):
    baud: Baud = Field(default=9600, description="serial rate, must match the drive's BR")
    steps_per_rev: int = Field(default=20000, ge=200, le=51200, description="EG, motor steps per rev")
    home: str = Field(default="3F", pattern=r"^X?[1-9][LHRF]$", description="SH input+condition, e.g. 3F")
    poll_ms: float = Field(default=10.0, gt=0.0, le=1000.0, description="SC poll interval while moving")


class SclStage:
    def __init__(self, url: DeviceUrl, context: dict[str, Any]) -> None:
        self.port = serial_port(url, "stage")
        self.options = url.options_as(SclOptions, "stage")
        self.identity = ""
        self.reconnects = 0
        self._settings = MotionSettings()
        self._configured = False
        self._link: SerialLink | None = None
        self._closed = False

    # --- the Stage protocol ----------------------------------------------------------------

    async def connect(self, timeout_s: float) -> None:
        if self._closed:
            raise DriverIOError(f"scl@{self.port}: closed")
        deadline = time.monotonic() + timeout_s
        if self._link is None:
            self._link = SerialLink(self.port, self.options.baud, f"scl@{self.port}")
        try:
            if not self._link.is_open:
                await self._link.open()
            await self._handshake(deadline)
        except BaseException:
            link, self._link = self._link, None  # a failed connect leaves no port or thread behind
            await link.shutdown()
            raise
        log.info("scl.connected", port=self.port, identity=self.identity)

    async def configure(self, settings: MotionSettings, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        await self._ensure_link(deadline)
        await self._apply(settings, deadline)
        self._settings, self._configured = settings, True

    async def home(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        await self._ensure_link(deadline)
        # homing is the recovery step after a fault: an alarm that latched (and has gone) is
        # reset and the motor enabled again; one that persists fails the homing
        await self._command("AR", deadline)
        await self._check_alarms(deadline)
        await self._command("ME", deadline)
        await self._motion(f"SH{self.options.home}", "homing", deadline, timeout_s)
        await self._command("SP0", deadline)
        log.info("scl.homed", port=self.port)

    async def move_by(self, degrees: float, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        await self._ensure_link(deadline)
        steps = round(degrees / 360.0 * self.options.steps_per_rev)
        await self._command(f"DI{steps}", deadline)
        await self._motion("FL", f"{degrees:g} deg move", deadline, timeout_s)
        settle_s = self._settings.settle_ms / 1000.0
        if time.monotonic() + settle_s > deadline:
            # cutting the settle short would blur the picture without anyone knowing
            raise DriverTimeout(
                f"scl@{self.port}: {degrees:g} deg move in position, but its "
                f"{settle_s:g} s settle does not fit in {timeout_s:g} s"
            )
        await asyncio.sleep(settle_s)
        log.debug("scl.moved", port=self.port, degrees=degrees, steps=steps)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        link, self._link = self._link, None
        if link is None:
            return
        started = time.monotonic()
        if link.is_open:
            try:
                # the lock may be held by a move being cancelled: bound the wait for it too
                async with asyncio.timeout(CLOSE_TIMEOUT_S / 2):
                    await self._disable(link)
            except (CellError, TimeoutError) as exc:
                log.warning("scl.disable_failed", port=self.port, error=str(exc) or "timeout")
        await link.shutdown(max(CLOSE_TIMEOUT_S - (time.monotonic() - started), MIN_STEP_S))

    def health(self) -> dict[str, Any]:
        link = self._link
        return {
            "connected": bool(link is not None and link.is_open and not self._closed),
            "reconnects": self.reconnects,
            "identity": self.identity or None,
        }

    # --- steps -----------------------------------------------------------------------------

    async def _handshake(self, deadline: float) -> None:
        await self._command("PR4", deadline)  # acknowledgements on: every command is answered
        self.identity = await self._query("MV", deadline)
        await self._command("AR", deadline)  # stale alarms of an earlier session
        await self._check_alarms(deadline)
        await self._command(f"EG{self.options.steps_per_rev}", deadline, refusal=DriverInitError)
        await self._command("ME", deadline)

    async def _check_alarms(self, deadline: float) -> None:
        alarms = self._hex(await self._query("AL", deadline), "AL")
        if alarms:
            raise StageAlarm(f"scl@{self.port}", alarms, decode_alarms(alarms))

    async def _apply(self, settings: MotionSettings, deadline: float) -> None:
        for mnemonic, value in (("VE", settings.speed_rps), ("AC", settings.accel_rps2), ("DE", settings.accel_rps2)):
            await self._command(f"{mnemonic}{_number(value)}", deadline, refusal=DriverInitError)

    async def _ensure_link(self, deadline: float) -> None:
        """Fail if not connected; reopen the port once if it vanished since the last call."""
        if self._closed or self._link is None:
            raise DriverIOError(f"scl@{self.port}: {'closed' if self._closed else 'not connected'}")
        if self._link.is_open:
            return
        log.warning("scl.reconnecting", port=self.port)
        try:
            await self._link.open()
            await self._handshake(deadline)
            if self._configured:
                await self._apply(self._settings, deadline)  # a power-cycled drive forgot them
        except BaseException as exc:
            await self._link.close()  # half a handshake: the next call starts over
            if type(exc) is DriverIOError:
                raise DriverIOError(f"scl@{self.port}: link lost, reconnecting failed: {exc}") from exc
            raise
        self.reconnects += 1
        log.info("scl.reconnected", port=self.port, reconnects=self.reconnects)

    async def _motion(self, command: str, what: str, deadline: float, timeout_s: float) -> None:
        """Start a queued motion command and poll SC until done; stop the drive if we give up."""
        try:
            await self._command(command, deadline)
            while True:
                status = await self._status(deadline)
                if status & SC_IN_POSITION and not status & (SC_MOVING | SC_HOMING):
                    return
                if time.monotonic() + self.options.poll_ms / 1000.0 >= deadline:
                    raise DriverTimeout(f"still SC={status:04X}")
                await asyncio.sleep(self.options.poll_ms / 1000.0)
        except DriverTimeout as exc:
            await self._stop()
            raise DriverTimeout(f"scl@{self.port}: {what} not done within {timeout_s:g} s: {exc}") from exc
        except asyncio.CancelledError:
            await self._stop()  # a cancelled cycle must not leave the table turning
            raise

    async def _status(self, deadline: float) -> int:
        """SC, raising StageAlarm/StageFault if the drive reports one."""
        status = self._hex(await self._query("SC", deadline), "SC")
        if status & SC_ALARM:
            # a fresh deadline: the alarm is worth reporting even if the move's time is up
            bits = self._hex(await self._query("AL", time.monotonic() + ALARM_QUERY_S), "AL")
            raise StageAlarm(f"scl@{self.port}", bits, decode_alarms(bits))
        if status & SC_FAULT:
            raise StageFault(f"scl@{self.port}: drive fault (SC={status:04X}) without alarm code")
        return status

    async def _disable(self, link: SerialLink) -> None:
        answer = await link.transact(b"MD" + CR, CR, STOP_TIMEOUT_S)
        if answer[:-1] not in (b"%", b"*"):
            raise DriverIOError(f"scl@{self.port}: answer {answer!r} to MD is not an acknowledgement")

    async def _stop(self) -> None:
        if self._link is None or not self._link.is_open:
            return
        try:
            await self._command("SK", time.monotonic() + STOP_TIMEOUT_S)
        except CellError as exc:
            log.warning("scl.stop_failed", port=self.port, error=str(exc))

    # --- one exchange ----------------------------------------------------------------------

    async def _transact(self, command: str, deadline: float) -> bytes:
        """Send one command, return its answer without the CR."""
        assert self._link is not None
        timeout_s = max(min(ANSWER_TIMEOUT_S, deadline - time.monotonic()), MIN_STEP_S)
        answer = await self._link.transact(command.encode("ascii") + CR, CR, timeout_s)
        return answer[:-1]

    async def _command(self, command: str, deadline: float, refusal: type[CellError] = DriverIOError) -> None:
        answer = await self._transact(command, deadline)
        if answer in (b"%", b"*"):
            return
        if REFUSAL.fullmatch(answer):
            code = answer.decode()
            reason = REFUSALS.get(code, "refused")
            raise refusal(
                f"scl@{self.port}: drive refused {command} (command {command[:2]}, parameter "
                f"{command[2:] or 'none'!r}): {code} {reason}"
            )
        raise DriverIOError(f"scl@{self.port}: answer {answer + CR!r} to {command} is not an SCL acknowledgement")

    async def _query(self, mnemonic: str, deadline: float) -> str:
        answer = await self._transact(mnemonic, deadline)
        prefix = mnemonic.encode() + b"="
        value = answer[len(prefix) :].decode("ascii", errors="replace")
        if answer.startswith(prefix) and value.isprintable() and "\ufffd" not in value:
            return value
        raise DriverIOError(f"scl@{self.port}: answer {answer + CR!r} to {mnemonic} is not {mnemonic}=<value>")

    def _hex(self, value: str, mnemonic: str) -> int:
        try:
            return int(value, 16)
        except ValueError:
            raise DriverIOError(f"scl@{self.port}: {mnemonic}={value!r} is not hexadecimal") from None
