"""Wire-level emulator of an Applied Motion Products SCL stepper drive on a pseudo-terminal.

The emulator serves SCL on a ``PtyPort`` (sim/pty_port.py); the driver opens the slave path
with pyserial exactly as it opens ``/dev/ttyUSB0``. ``python -m cellctl.sim.scl_drive
[--steps-per-rev N] [--link-dir DIR]`` prints ``READY <path>`` and serves until SIGTERM/SIGINT.

Modelled: commands end with CR, no echo; acknowledgements only after ``PR`` with bit 2
(``PR4``): ``%`` executed, ``*`` queued; queries answer ``XX=value``. ``ME``/``MD``, ``VE``
``AC`` ``DE`` (rev/s, rev/s^2), ``EG``, ``DI``, ``SP``, ``IP`` (hex two's complement, 8 digits),
``SC``/``AL`` (hex, bits as in cell.md section 4), ``AR``, ``MV``, ``PR``, ``BR``/``PB`` (queried
only). ``FL``/``FP``/``SH`` are queued and run one after the other as trapezoidal moves in
``STEPS_PER_MOVE`` sub-steps (AC up, DE down), timed by ``world.clock`` (real time without a
world); while they run SC shows moving (bit 4) and not in position (bit 3). ``SK`` stops and
empties the queue. ``SH`` turns forward to the next index: the next full revolution of the
world's encoder, or without a world the next multiple of EG motor steps. With a world every
sub-step turns ``world.advance_encoder`` by the motor steps times counts-per-rev / EG.
Alarms the emulator treats as drive faults (over-temperature, over/under-voltage,
over-current, open winding, bad encoder) also set SC bit 2 and disable the motor; ``AR``
clears every alarm, ``ME`` re-enables. VE/AC/DE limits are the emulator's (``LIMITS``); the
real ranges depend on the drive model.

Refusal codes: only ``?5`` (out of range) is confirmed by the manual; the others are this
emulator's choice: ``?1`` missing or malformed parameter, ``?2`` unknown command, ``?3`` not
supported by the emulator (changing the baud rate), ``?4`` not allowed now (motion while
disabled or faulted, EG/SP while moving). Refusals are answered even with acks off.

Not modelled: baud rates and transfer time (a pty has none), address characters and
checksums (PR bits other than 2), Q programs, jogging, inputs/outputs (``SO``), ``FH``,
following error and stalls, decimal positions (``IFD``), the size limit of the command buffer.
Fault injection for tests: ``inject_alarm``, ``inject_fault``, ``set_mute``,
``send_garbage``, ``unplug``/``replug``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
from collections import deque
from functools import partialmethod
from pathlib import Path
from typing import TYPE_CHECKING

from cellctl.sim.pty_port import PtyPort, run_emulator
from cellctl.sim.stage import STEPS_PER_MOVE

if TYPE_CHECKING:
    from cellctl.sim.world import SimWorld

LINK_NAME = "scl-drive"
MODEL_REVISION = "107M062"  # MV answer: model code + firmware revision (made up, format as documented)

SC_ENABLED, SC_FAULT, SC_IN_POSITION, SC_MOVING = 1 << 0, 1 << 2, 1 << 3, 1 << 4
SC_ALARM, SC_HOMING = 1 << 9, 1 << 10
# over-temperature, over-voltage, under-voltage, over-current, open winding, bad encoder
FAULTING_ALARMS = (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9)

MALFORMED, UNKNOWN, UNSUPPORTED, NOT_NOW, OUT_OF_RANGE = "?1", "?2", "?3", "?4", "?5"
LIMITS = {"VE": (0.0042, 80.0), "AC": (0.167, 5461.167), "DE": (0.167, 5461.167)}  # rev/s, rev/s^2
DI_LIMIT = 2**31 - 1
BARE_COMMANDS = {"ME", "MD", "AR", "SK"}  # take no parameter
HOME_PARAM = re.compile(r"X?[1-9][LHRF]")
NUMBER = re.compile(r"[-+]?\d+(\.\d*)?|[-+]?\.\d+")
INTEGER = re.compile(r"[-+]?\d+")


def _profile_revs(t: float, revs: float, speed: float, accel: float, decel: float) -> tuple[float, float]:
    """(duration, distance at ``t``) of a trapezoidal move; triangular if too short to cruise."""
    peak = min(speed, math.sqrt(2.0 * revs * accel * decel / (accel + decel)))
    t_up, t_down = peak / accel, peak / decel
    s_up, s_down = peak * t_up / 2.0, peak * t_down / 2.0
    t_cruise = (revs - s_up - s_down) / peak if peak > 0 else 0.0
    total = t_up + t_cruise + t_down
    if t <= t_up:
        return total, accel * t * t / 2.0
    if t <= t_up + t_cruise:
        return total, s_up + peak * (t - t_up)
    left = max(total - t, 0.0)
    return total, revs - decel * left * left / 2.0


class SclDriveEmulator:
    def __init__(self, world: SimWorld | None = None, steps_per_rev: int = 20000, link_dir: Path | None = None) -> None:
        self.world = world
        self.commands: list[str] = []  # every command received, in order, without CR
        self.status_answers: list[int] = []  # every SC value answered, to see what a poller saw
        self.steps_per_rev = steps_per_rev
        self.protocol = 1  # PR at power-up: standard SCL, no acknowledgements
        self.enabled = False
        self.position = 0  # reported position, steps (SP sets it)
        self.speed_rps, self.accel_rps2, self.decel_rps2 = 1.0, 100.0, 100.0
        self.distance = 0  # DI, steps
        self.alarms = 0
        self.fault = False
        self._motor_steps = 0  # absolute motor position; couples the encoder and defines the index
        self._queue: deque[tuple[str, int]] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled runners, awaited by close()
        self._mute = False
        self._garbage: bytes | None = None
        self._port = PtyPort(LINK_NAME, self._on_line, events="scl_drive", link_dir=link_dir)

    # --- the pty ---------------------------------------------------------------------------

    @property
    def slave_path(self) -> str:
        """The pty the drive is on (the last one while unplugged); "" before ``start``."""
        return self._port.pty_path or ""

    async def start(self) -> str:
        """Open the pty and serve; returns the path to open (the stable link if ``link_dir``)."""
        return self._port.plug()

    def unplug(self) -> None:
        """The USB adapter is pulled: the pty and the stable link vanish; the drive keeps its state."""
        self._port.unplug()

    async def replug(self) -> str:
        """A new pty (and link) for the same drive state; returns the path as ``start`` does."""
        return self._port.replug()

    async def close(self) -> None:
        await self._stop_motion()
        self.unplug()

    def _on_line(self, line: str) -> None:
        if line:  # a bare CR is no command and gets no answer
            self._reply(self._handle(line))

    def _reply(self, answer: str | None) -> None:
        if answer is None or self._mute or not self._port.plugged:
            return
        if self._garbage is not None:
            data, self._garbage = self._garbage, None
        else:
            data = (answer + "\r").encode()
        self._port.write(data)

    # --- fault injection -------------------------------------------------------------------

    def inject_alarm(self, bits: int) -> None:
        """Raise AL ``bits`` (SC bit 9); a move in progress stops, faulting alarms disable."""
        self.alarms |= bits
        if bits & FAULTING_ALARMS:
            self.enabled = False
        self._kill_queue()

    def inject_fault(self, on: bool = True) -> None:
        """SC bit 2 without an alarm code (how a fault the AL bits do not name would look)."""
        self.fault = on
        if on:
            self.enabled = False
            self._kill_queue()

    def set_mute(self, on: bool) -> None:
        """Commands still execute, nothing is answered (a broken TX wire)."""
        self._mute = on

    def send_garbage(self, data: bytes) -> None:
        """Replace the next answer by ``data`` (line noise, a wrong baud rate)."""
        self._garbage = data

    # --- state -----------------------------------------------------------------------------

    @property
    def moving(self) -> bool:
        return bool(self._queue)

    @property
    def homing(self) -> bool:
        return any(kind == "SH" for kind, _ in self._queue)

    @property
    def status(self) -> int:
        bits = SC_ENABLED if self.enabled else 0
        if self.fault or self.alarms & FAULTING_ALARMS:
            bits |= SC_FAULT
        if self.alarms:
            bits |= SC_ALARM
        if self.homing:
            bits |= SC_HOMING
        if self.moving:
            bits |= SC_MOVING
        elif self.enabled:
            bits |= SC_IN_POSITION
        return bits

    # --- commands --------------------------------------------------------------------------

    def _handle(self, line: str) -> str | None:
        self.commands.append(line)
        mnemonic, param = line[:2], line[2:]
        queries = {
            "SC": lambda: f"{self.status:04X}",
            "AL": lambda: f"{self.alarms:04X}",
            "IP": lambda: f"{self.position & 0xFFFFFFFF:08X}",
            "MV": lambda: MODEL_REVISION,
            "PR": lambda: str(self.protocol),
            "BR": lambda: "1",
            "PB": lambda: "1",
            "EG": lambda: str(self.steps_per_rev),
            "DI": lambda: str(self.distance),
            "SP": lambda: str(self.position),
            "VE": lambda: f"{self.speed_rps:.4f}",
            "AC": lambda: f"{self.accel_rps2:.3f}",
            "DE": lambda: f"{self.decel_rps2:.3f}",
        }
        if not param and mnemonic in queries:
            value = queries[mnemonic]()
            if mnemonic == "SC":
                self.status_answers.append(self.status)
            return f"{mnemonic}={value}"
        handler = getattr(self, f"_cmd_{mnemonic}", None) if re.fullmatch("[A-Z]{2}", mnemonic) else None
        if handler is None:
            return MALFORMED if mnemonic in queries else UNKNOWN
        if param and mnemonic in BARE_COMMANDS:
            return MALFORMED
        result: str = handler(param)
        if result in ("%", "*") and not self.protocol & 4:
            return None  # acknowledgements off
        return result

    @staticmethod
    def _number(param: str, low: float, high: float) -> float | str:
        """The parameter as a number in [low, high], or the refusal to answer."""
        if not NUMBER.fullmatch(param):
            return MALFORMED
        value = float(param)
        return value if low <= value <= high else OUT_OF_RANGE

    @classmethod
    def _integer(cls, param: str, low: int, high: int) -> int | str:
        value = cls._number(param, low, high) if INTEGER.fullmatch(param) else MALFORMED
        return value if isinstance(value, str) else int(value)

    def _cmd_PR(self, param: str) -> str:
        value = self._integer(param, 0, 63)
        if isinstance(value, str):
            return value
        self.protocol = value
        return "%"

    def _cmd_BR(self, param: str) -> str:
        value = self._integer(param, 1, 5)
        if isinstance(value, str):
            return value
        return "%" if value == 1 else UNSUPPORTED  # the pty has no baud rate to change

    _cmd_PB = _cmd_BR

    def _cmd_ME(self, param: str) -> str:
        if self.fault or self.alarms & FAULTING_ALARMS:
            return NOT_NOW
        self.enabled = True
        return "%"

    def _cmd_MD(self, param: str) -> str:
        self.enabled = False
        self._kill_queue()
        return "%"

    def _cmd_AR(self, param: str) -> str:
        self.alarms, self.fault = 0, False
        return "%"

    def _cmd_SK(self, param: str) -> str:
        self._kill_queue()
        return "%"

    def _set_float(self, name: str, attr: str, param: str) -> str:
        value = self._number(param, *LIMITS[name])
        if isinstance(value, str):
            return value
        setattr(self, attr, value)
        return "%"

    _cmd_VE = partialmethod(_set_float, "VE", "speed_rps")
    _cmd_AC = partialmethod(_set_float, "AC", "accel_rps2")
    _cmd_DE = partialmethod(_set_float, "DE", "decel_rps2")

    def _cmd_EG(self, param: str) -> str:
        value = self._integer(param, 200, 51200)
        if isinstance(value, str):
            return value
        if value % 2:
            return OUT_OF_RANGE  # the drive takes even step counts only
        if self.moving:
            return NOT_NOW
        self.steps_per_rev = value
        return "%"

    def _cmd_DI(self, param: str) -> str:
        value = self._integer(param, -DI_LIMIT, DI_LIMIT)
        if isinstance(value, str):
            return value
        self.distance = value
        return "%"

    def _cmd_SP(self, param: str) -> str:
        value = self._integer(param, -DI_LIMIT, DI_LIMIT)
        if isinstance(value, str):
            return value
        if self.moving:
            return NOT_NOW
        self.position = value
        return "%"

    def _feed(self, kind: str, param: str) -> str:
        """FL (relative) or FP (absolute) to DI, or to the parameter, which sets DI first."""
        answer = self._cmd_DI(param) if param else "%"
        return self._enqueue(kind, self.distance) if answer == "%" else answer

    _cmd_FL = partialmethod(_feed, "FL")
    _cmd_FP = partialmethod(_feed, "FP")

    def _cmd_SH(self, param: str) -> str:
        if not HOME_PARAM.fullmatch(param):
            return MALFORMED
        return self._enqueue("SH", 0)

    # --- motion ----------------------------------------------------------------------------

    def _enqueue(self, kind: str, steps: int) -> str:
        if not self.enabled or self.fault or self.alarms:
            return NOT_NOW
        # Moving from the moment the command is accepted: a real drive starts within a servo
        # cycle, long before the next SC query could cross the wire.
        self._queue.append((kind, steps))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run_queue(), name="scl-drive-motion")
        return "*"

    async def _run_queue(self) -> None:
        while self._queue:
            kind, steps = self._queue[0]
            if kind == "FL":
                await self._move(steps, faultable=True)
            elif kind == "FP":
                await self._move(steps - self.position, faultable=True)
            else:
                await self._move(self._steps_to_index())
            self._queue.popleft()

    def _kill_queue(self) -> None:
        self._queue.clear()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()  # motion stops where it is
            self._stopping.add(self._runner)
            self._runner.add_done_callback(self._stopping.discard)
        self._runner = None  # the next queued move gets a fresh runner

    async def _stop_motion(self) -> None:
        self._kill_queue()
        await asyncio.gather(*self._stopping, return_exceptions=True)

    def _counts(self, motor_steps: int) -> int:
        """Encoder counts for an absolute motor position (floor: the encoder's own quantisation)."""
        assert self.world is not None
        return motor_steps * self.world.encoder_counts_per_rev // self.steps_per_rev

    def _steps_to_index(self) -> int:
        if self.world is None:
            return -self._motor_steps % self.steps_per_rev
        counts_per_rev = self.world.encoder_counts_per_rev
        target = self._counts(self._motor_steps) + (-self.world.encoder_count % counts_per_rev)
        first = -(-target * self.steps_per_rev // counts_per_rev)  # first step reaching the count
        return max(first - self._motor_steps, 0)

    async def _move(self, steps: int, faultable: bool = False) -> None:
        """A trapezoidal move; ``faultable`` moves (the part's turns, not homing) suffer the
        world's injected stage faults: a stall never arrives, an alarm stops it halfway."""
        faults = self.world.faults if self.world is not None and faultable else None
        if faults is not None and faults.stage_stall:
            await asyncio.Event().wait()  # the motor is blocked: moving, never in position
        revs = abs(steps) / self.steps_per_rev
        sign = 1 if steps >= 0 else -1
        duration, _ = _profile_revs(0.0, revs, self.speed_rps, self.accel_rps2, self.decel_rps2)
        done = 0
        for i in range(1, STEPS_PER_MOVE + 1):
            await self._sleep(duration / STEPS_PER_MOVE)
            _, revs_now = _profile_revs(
                duration * i / STEPS_PER_MOVE, revs, self.speed_rps, self.accel_rps2, self.decel_rps2
            )
            target = steps if i == STEPS_PER_MOVE else sign * round(revs_now * self.steps_per_rev)
            self._step(target - done)
            done = target
            if i == STEPS_PER_MOVE // 2 and faults is not None and faults.stage_alarm_bits:
                bits, faults.stage_alarm_bits = faults.stage_alarm_bits, 0
                self.inject_alarm(bits)  # cancels this runner: the move stops halfway
                await asyncio.sleep(0)

    def _step(self, delta: int) -> None:
        before = self._motor_steps
        self._motor_steps += delta
        self.position += delta
        if self.world is not None:
            counts = self._counts(self._motor_steps) - self._counts(before)
            if counts:
                self.world.advance_encoder(counts)

    async def _sleep(self, seconds: float) -> None:
        if self.world is not None:
            await self.world.clock.sleep(seconds)
        else:
            await asyncio.sleep(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellctl.sim.scl_drive", description=__doc__.split("\n")[0])
    parser.add_argument("--steps-per-rev", type=int, default=20000, help="EG at power-up")
    parser.add_argument("--link-dir", type=Path, default=None, help=f"also serve as DIR/{LINK_NAME}")
    args = parser.parse_args(argv)
    return run_emulator(SclDriveEmulator(steps_per_rev=args.steps_per_rev, link_dir=args.link_dir))


if __name__ == "__main__":
    sys.exit(main())
