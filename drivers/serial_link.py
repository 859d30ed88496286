"""One serial port used from asyncio: pyserial's blocking calls run on the port's own thread.

A command is written whole, the answer read up to a terminator with a deadline, and every
failure becomes a driver error: a silent device a DriverTimeout, a vanished port (USB
adapter unplugged, emulator gone) a DriverIOError, after which the link is closed and may be
opened again. ``shutdown`` returns within its bound even while a transaction waits on a
silent device: the transaction is aborted at its next read chunk. ``serial_for_url``
accepts device paths and pyserial URLs (``socket://``, ``rfc2217://``) alike, so drivers
reach TCP serial servers through the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar

import serial
from pydantic import AfterValidator

from cellctl.drivers.errors import DriverInitError, DriverIOError, DriverTimeout
from cellctl.drivers.registry import DeviceUrl

T = TypeVar("T")
READ_CHUNK_S = 0.02  # granularity of the read loop; the deadline is what counts
SHUTDOWN_TIMEOUT_S = 1.0  # an aborted transaction ends within a read chunk; the rest is a loaded host
BAUD_RATES = (9600, 19200, 38400, 57600, 115200)


def _known_baud(value: int) -> int:
    if value not in BAUD_RATES:
        raise ValueError(f"must be one of {', '.join(map(str, BAUD_RATES))}")
    return value


Baud = Annotated[int, AfterValidator(_known_baud)]  # for the options models of serial backends


def serial_port(url: DeviceUrl, kind: str) -> str:
    """What pyserial opens for ``serial:///dev/ttyUSB0`` or ``socket://host:port``."""
    if url.scheme not in ("serial", "socket") or not url.location:
        raise DriverInitError(f"{kind} {url.raw!r}: no port, not serial:///dev/<port> or socket://<host>:<port>")
    return f"socket://{url.location}" if url.scheme == "socket" else url.location


class SerialLink:
    def __init__(self, port: str, baudrate: int, name: str) -> None:
        self.port = port
        self.baudrate = baudrate
        self.name = name
        self._serial: serial.Serial | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"serial-{name}")
        self._lock = asyncio.Lock()  # one transaction at a time: answers must not interleave
        self._aborted = False  # set by shutdown(): a transaction in the thread gives up at once

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._serial.is_open

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        try:
            self._serial = serial.serial_for_url(
                self.port,
                baudrate=self.baudrate,
                bytesize=8,
                parity="N",
                stopbits=1,
                timeout=READ_CHUNK_S,
                write_timeout=1.0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverIOError(f"{self.name}: cannot open {self.port}: {exc}") from exc

    async def close(self) -> None:
        await self._run(self._close)

    def _close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):  # the port may already be gone
                self._serial.close()
            self._serial = None

    async def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Close the port and end its thread, within ``timeout_s``; never raises."""
        if self._aborted:
            return
        self._aborted = True
        try:
            closing = asyncio.get_running_loop().run_in_executor(self._pool, self._close)
            await asyncio.wait_for(closing, timeout_s)
        except TimeoutError:
            pass  # the thread is stuck in pyserial: it ends when that call returns, unattended
        self._pool.shutdown(wait=False)  # never join a thread on the event loop

    async def transact(self, command: bytes, terminator: bytes, timeout_s: float) -> bytes:
        """Write ``command`` and return the answer up to and including ``terminator``."""
        async with self._lock:
            return await self._run(self._transact, command, terminator, timeout_s)

    def _transact(self, command: bytes, terminator: bytes, timeout_s: float) -> bytes:
        ser = self._serial
        if ser is None:
            raise DriverIOError(f"{self.name}: port {self.port} is not open")
        deadline = time.monotonic() + timeout_s
        try:
            ser.reset_input_buffer()  # a late answer to an earlier command is not this one's
            ser.write(command)
            answer = bytearray()
            while not answer.endswith(terminator):
                if self._aborted:
                    raise DriverIOError(f"{self.name}: link shut down during {command!r}")
                if time.monotonic() >= deadline:
                    raise DriverTimeout(
                        f"{self.name}: no answer to {command!r} within {timeout_s:g} s (got {bytes(answer)!r})"
                    )
                answer += ser.read(max(ser.in_waiting, 1))
            return bytes(answer)
        except DriverTimeout:
            raise  # a TimeoutError is an OSError too, but a silent device keeps its port
        except (serial.SerialException, OSError, termios.error) as exc:
            # termios.error: pyserial's buffer flush on a vanished port (not an OSError)
            self._close()
            raise DriverIOError(f"{self.name}: port {self.port} failed: {exc}") from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._aborted:
            raise DriverIOError(f"{self.name}: link shut down")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
