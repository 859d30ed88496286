"""The pseudo-terminal a wire-level device emulator serves on, and its ``python -m`` entry.

``PtyPort`` stands for the device's serial port: the emulator keeps the pty master, the driver
opens the slave path with pyserial exactly as it opens ``/dev/ttyUSB0``. With ``link_dir`` a
stable symlink ``link_dir/<name>`` points at the slave, like ``/dev/serial/by-id``: unplug()
removes it and a new plug re-points it at a new pty, so reconnection by path can be tested.
Input is cut into lines at CR; what a line means, and what the device does with bytes it
ignores or with an over-long line, is the emulator's business (``ignored``,
``max_line_bytes``, ``on_overflow``).

``serve_until_signal`` is the body of every emulator's ``python -m`` entry: start, print
``READY <path>``, serve until SIGTERM/SIGINT, close; ``run_emulator`` runs it as a process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

log = structlog.get_logger("cellctl.sim.pty_port")

END = b"\r"  # both emulated devices end a command with CR


class PtyPort:
    """One serial line on a pty; ``on_line`` gets every line (without CR, maybe empty)."""

    def __init__(
        self,
        name: str,
        on_line: Callable[[str], None],
        *,
        events: str,
        link_dir: Path | None = None,
        ignored: bytes = b"",
        max_line_bytes: int = 0,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.name = name  # also the symlink's name in link_dir
        self.link_dir = link_dir
        self.path: str | None = None  # what the driver opens: the symlink with link_dir, else the pty
        self.pty_path: str | None = None  # the slave; the last one stays named while unplugged
        self._on_line = on_line
        self._events = events  # prefix of the log events, the emulator's own name
        self._ignored = ignored
        self._max_line_bytes = max_line_bytes  # 0: no limit
        self._on_overflow = on_overflow
        self._master: int | None = None
        self._slave: int | None = None  # kept open so the master never sees a hang-up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> str:
        """Open a new pty and serve it; returns the path to open. Needs the running loop."""
        if self._master is not None:
            raise RuntimeError(f"{self.name} pty already plugged")
        self._loop = asyncio.get_running_loop()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass as on a real line
        os.set_blocking(self._master, False)
        self._buffer.clear()
        self._loop.add_reader(self._master, self._on_readable)
        self.path = self.pty_path = os.ttyname(self._slave)
        if self.link_dir is not None:
            link, tmp = self.link_dir / self.name, self.link_dir / f".{self.name}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.pty_path)
            os.replace(tmp, link)  # re-point atomically, as udev does
            self.path = str(link)
        log.info(f"{self._events}.plugged", path=self.path, pty=self.pty_path)
        return self.path

    def unplug(self) -> None:
        """The cable is pulled: the pty and the symlink vanish. Nothing happens if unplugged."""
        if self._master is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        self._buffer.clear()
        if self.link_dir is not None:
            (self.link_dir / self.name).unlink(missing_ok=True)
        log.info(f"{self._events}.unplugged", pty=self.pty_path)

    def replug(self) -> str:
        """A new pty (and symlink) for the same device; returns the path as ``plug`` does."""
        self.unplug()
        return self.plug()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the driver; dropped while unplugged (a reply still on its way)."""
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except BlockingIOError:
            log.warning(f"{self._events}.reply_dropped", reason="pty buffer full", size=len(data))
        except OSError as exc:
            log.warning(f"{self._events}.write_failed", error=str(exc))

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # the pty is broken: stop listening rather than spin
            log.warning(f"{self._events}.read_failed", error=str(exc))
            self.unplug()
            return
        self._buffer += data.translate(None, self._ignored)
        # A line handler may unplug the port, which empties the buffer and ends this loop.
        while (end := self._buffer.find(END)) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._on_line(line.decode("ascii", errors="replace"))
        if self._max_line_bytes and len(self._buffer) > self._max_line_bytes:
            self._buffer.clear()
            if self._on_overflow is not None:
                self._on_overflow()


class Emulator(Protocol):
    async def start(self) -> str:
        """Plug the emulator's port; the path the driver opens."""

    async def close(self) -> None:
        """Unplug and power off."""


async def serve_until_signal(emulator: Emulator) -> None:
    """Start ``emulator``, print ``READY <path>``, serve until SIGTERM or SIGINT, then close it."""
    path = await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {path}", flush=True)  # the readiness line a test fixture waits for
    try:
        await stop.wait()
    finally:
        await emulator.close()


def run_emulator(emulator: Emulator) -> int:
    """The ``python -m`` process: logs to stderr, since stdout carries only the READY line."""
    from cellctl.logs import configure  # the process's composition root, not an import side effect

    configure(stream=sys.stderr)
    asyncio.run(serve_until_signal(emulator))
    return 0
