"""Gardasoft RT-series lighting controller emulated at the wire level on a pseudo-terminal.

The emulator serves on a ``PtyPort`` (sim/pty_port.py); the driver opens the slave path with
pyserial exactly as it opens ``/dev/ttyUSB1`` (raw mode: no echo, no CR/LF translation). With
``link_dir`` a stable symlink ``link_dir/gardasoft`` points at the slave, like
``/dev/serial/by-id``: unplug() removes it and replug() re-points it at a new pty, so
reconnection by path can be tested.

Modelled: per-channel state (mode, brightness, pulse width/delay/retrigger, trigger count);
``VR``, ``ST``, ``RSc,s``, ``RTc,p,d,s[,r]``, ``TRc``, ``AW``, ``GTn``; several commands per
line joined by ``;``; CR ends a line (LF is ignored); every line is answered by data lines
(CRLF) and one prompt ``>``; errors ``Err 1`` bad value (channel, range), ``Err 2`` unknown
command, ``Err 3`` number format, ``Err 4`` wrong parameter count, ``Err 5`` value clipped
(the clipped value is applied). Overdrive: continuous <= 100 %; strobe 101-200 % needs a pulse
<= 50 ms (OUR ASSUMPTION, unconfirmed), 201-300 % <= 10 ms; beyond, the brightness is
clipped. With a SimWorld, a lit channel (RS on, RT armed) sets ``world.light_gain`` to
brightness / 80 % (the brightest lit channel; 0 when all are off or ``faults.light_dead``).

Not modelled: echo of typed characters, the duty-cycle limit (20 % at 201-300 %) and the
retrigger timing, trigger inputs and real pulse timing, GT event messages, the Ethernet port,
baud-rate mismatch, the exact text of ``ST``/``VR`` of real firmware, and what a real
controller does with the rest of a ``;``-joined line after an error (here: it is dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cellctl.drivers.lighting import strobe_max_pct
from cellctl.sim.lighting import NOMINAL_INTENSITY_PCT
from cellctl.sim.pty_port import PtyPort, run_emulator

if TYPE_CHECKING:
    from cellctl.sim.world import SimWorld

LINK_NAME = "gardasoft"
MAX_LINE_BYTES = 128  # the controller's line buffer; longer input is thrown away
NUMBER_RE = re.compile(r"\d+(\.\d*)?|\.\d+")
MAX_TIME_MS = 999.0
PARAM_COUNTS = {"VR": (0,), "ST": (0,), "RS": (2,), "RT": (4, 5), "TR": (1,), "AW": (0,), "GT": (1,)}


class _Err(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@dataclass
class ChannelState:
    mode: str = "continuous"  # or "strobe"
    brightness_pct: float = 0.0
    width_ms: float = 0.0
    delay_ms: float = 0.0
    retrigger_ms: float = 0.0
    triggers: int = 0


def _number(text: str) -> float:
    if not NUMBER_RE.fullmatch(text.strip()):
        raise _Err(3)
    return float(text)


def _strobe_clip(pct: float, width_ms: float) -> float:
    """Highest brightness the overdrive rules allow for this pulse width."""
    return min(pct, strobe_max_pct(width_ms))  # the one table of drivers/lighting/_limits.py


class GardasoftEmulator:
    def __init__(self, world: SimWorld | None = None, channels: int = 4, link_dir: Path | None = None) -> None:
        self.world = world
        self.n_channels = channels
        self.channels = {c: ChannelState() for c in range(1, channels + 1)}
        self.saved: dict[int, ChannelState] | None = None  # what AW stored
        self.events = False
        self.commands: list[str] = []
        # LF is ignored; a line longer than the controller's buffer is thrown away (Err 2)
        self._port = PtyPort(
            LINK_NAME,
            self._handle_line,
            events="gardasoft_emulator",
            link_dir=link_dir,
            ignored=b"\n",
            max_line_bytes=MAX_LINE_BYTES,
            on_overflow=self._on_overflow,
        )
        self._muted = False
        self._garbage: bytes | None = None
        self._chunk_bytes = 0
        self._gap_s = 0.0
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def identity(self) -> str:
        return f"RT{self.n_channels}20 V3.012"

    @property
    def path(self) -> str | None:
        """What the driver opens: the symlink with ``link_dir``, else the pty; None before start."""
        return self._port.path

    async def start(self) -> str:
        """Open the pty and serve it; return the path for the driver."""
        return self._port.plug()

    # fault injection
    def set_mute(self, on: bool) -> None:
        """A hung controller: commands are received (and recorded) but neither run nor answered."""
        self._muted = on

    def send_garbage(self, data: bytes) -> None:
        """Replace the next reply (data lines and prompt) by ``data``."""
        self._garbage = data

    def set_slow_replies(self, chunk_bytes: int, gap_s: float) -> None:
        """Write replies in pieces of ``chunk_bytes`` with ``gap_s`` between them (0 = whole)."""
        self._chunk_bytes, self._gap_s = chunk_bytes, gap_s

    def unplug(self) -> None:
        """Pull the cable: close the pty (the driver's port fails), remove the symlink."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._port.unplug()

    async def replug(self) -> str:
        """Plug in again on a new pty, symlink re-pointed; the controller kept its state."""
        self.unplug()
        return self._port.plug()

    async def close(self) -> None:
        """Power off: the port goes away and the LEDs go dark. Safe to call twice."""
        self.unplug()
        if self.world is not None:
            self.world.light_gain = 0.0

    # the wire
    def _on_overflow(self) -> None:
        if not self._muted:
            self._reply(b"Err 2\r\n>")

    def _handle_line(self, line: str) -> None:
        out: list[str] = []
        for command in line.split(";"):
            command = command.strip()
            if not command:
                continue
            self.commands.append(command)
            if self._muted:
                continue
            try:
                out.extend(self._execute(command))
            except _Err as err:
                out.append(f"Err {err.code}")
                break  # assumption: the rest of the line is dropped after an error
        if not self._muted:
            self._reply("".join(f"{ln}\r\n" for ln in out).encode("ascii") + b">")

    def _reply(self, data: bytes) -> None:
        if self._garbage is not None:
            data, self._garbage = self._garbage, None
        if self._chunk_bytes <= 0:
            self._port.write(data)
            return
        for i in range(0, len(data), self._chunk_bytes):
            self._write_later(i // self._chunk_bytes * self._gap_s, data[i : i + self._chunk_bytes])

    def _write_later(self, delay_s: float, data: bytes) -> None:
        def fire() -> None:
            self._pending.discard(handle)
            self._port.write(data)

        handle = asyncio.get_running_loop().call_later(delay_s, fire)
        self._pending.add(handle)

    # the controller
    def _execute(self, command: str) -> list[str]:
        mnemonic, args = command[:2].upper(), command[2:]
        params = args.split(",") if args else []
        if mnemonic not in PARAM_COUNTS:
            raise _Err(2)
        if len(params) not in PARAM_COUNTS[mnemonic]:
            raise _Err(4)
        return getattr(self, f"_{mnemonic.lower()}")(params)

    def _channel(self, text: str) -> ChannelState:
        value = _number(text)
        if value != int(value) or int(value) not in self.channels:
            raise _Err(1)
        return self.channels[int(value)]

    def _vr(self, params: list[str]) -> list[str]:
        return [self.identity]

    def _st(self, params: list[str]) -> list[str]:
        return [
            f"CH{c} RS S{ch.brightness_pct:g}%"
            if ch.mode == "continuous"
            else f"CH{c} RT P{ch.width_ms:g}ms D{ch.delay_ms:g}ms S{ch.brightness_pct:g}% "
            f"R{ch.retrigger_ms:g}ms T{ch.triggers}"
            for c, ch in self.channels.items()
        ]

    def _rs(self, params: list[str]) -> list[str]:
        ch, pct = self._channel(params[0]), _number(params[1])
        ch.mode, ch.brightness_pct = "continuous", min(pct, 100.0)
        return self._applied(ch, pct)

    def _rt(self, params: list[str]) -> list[str]:
        ch = self._channel(params[0])
        width, delay, pct, *retrigger = (_number(p) for p in params[1:])
        if max(width, delay, *retrigger) > MAX_TIME_MS:
            raise _Err(1)
        ch.mode, ch.width_ms, ch.delay_ms = "strobe", width, delay
        ch.retrigger_ms, ch.brightness_pct = (retrigger or [0.0])[0], _strobe_clip(pct, width)
        return self._applied(ch, pct)

    def _applied(self, ch: ChannelState, asked_pct: float) -> list[str]:
        """The (possibly clipped) setting is live: light the world, report a clip as Err 5."""
        if self.world is not None:
            lit = max(c.brightness_pct for c in self.channels.values())
            self.world.light_gain = 0.0 if self.world.faults.light_dead else lit / NOMINAL_INTENSITY_PCT
        if ch.brightness_pct != asked_pct:
            raise _Err(5)
        return []

    def _tr(self, params: list[str]) -> list[str]:
        ch = self._channel(params[0])
        ch.triggers += ch.mode == "strobe"
        return []

    def _aw(self, params: list[str]) -> list[str]:
        self.saved = {c: replace(ch) for c, ch in self.channels.items()}
        return []

    def _gt(self, params: list[str]) -> list[str]:
        value = _number(params[0])
        if value not in (0.0, 1.0):
            raise _Err(1)
        self.events = value == 1.0
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellctl.sim.gardasoft", description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=4, choices=(1, 2, 4))
    parser.add_argument("--link-dir", type=Path, default=None, help="also create DIR/gardasoft -> pty")
    args = parser.parse_args(argv)
    return run_emulator(GardasoftEmulator(channels=args.channels, link_dir=args.link_dir))


if __name__ == "__main__":
    sys.exit(main())
