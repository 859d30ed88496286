"""Helpers the link and the bridge share (the bridge imports the link, never the reverse)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task``, a child of the running task, and wait until it has ended.

    The child's CancelledError is the expected end and is swallowed, but a cancellation of the
    running task itself is re-raised: one that lands while we wait here arrives as the same
    CancelledError, and swallowing it would leave the caller running (a bridge that ignores
    SIGTERM because the robot dropped TCP just before)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


def noteworthy(n: int) -> bool:
    """Log the first ten of a kind, then every thousandth: a flood is counted, not printed."""
    return n <= 10 or n % 1000 == 0


__all__ = ["cancel_and_wait", "noteworthy"]
