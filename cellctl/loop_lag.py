"""Event-loop lag: how late a periodic timer fires. Anything blocking the loop shows here."""

from __future__ import annotations

import asyncio
import time

import numpy as np

PERIOD_S = 0.05


class LoopLagMonitor:
    def __init__(self, period_s: float = PERIOD_S) -> None:
        self._period_s = period_s
        self._task: asyncio.Task[None] | None = None
        self.samples_ms: list[float] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self._period_s)
            self.samples_ms.append(max((time.monotonic() - t0 - self._period_s) * 1e3, 0.0))

    def summary(self) -> dict[str, float]:
        if not self.samples_ms:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        s = np.asarray(self.samples_ms)
        return {"p50": round(float(np.percentile(s, 50)), 2), "p99": round(float(np.percentile(s, 99)), 2),
                "max": round(float(s.max()), 2)}
