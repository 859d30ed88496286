"""A wire-level emulator as its own process: started, READY line read, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def emulator_process(module: str, *args: str) -> AsyncIterator[str]:
    """Run ``python -m cellctl.sim.<module> ARGS``; yields the pty path it prints as READY.
    On exit it is sent SIGTERM and must exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"cellctl.sim.{module}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("READY /"), line
        yield line.split()[1]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
