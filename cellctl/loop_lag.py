"""Event-loop lag: how late a periodic timer fires. Anything blocking the loop shows here.

The daemon runs for months, so the samples go into a fixed histogram (bounded memory), not a
list: 40 log-spaced buckets per decade from 0.1 ms to 10 s, one bucket below (lags under
0.1 ms, including 0) and one above (10 s and more), plus the exact count, sum and maximum.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time

PERIOD_S = 0.05
LOW_MS = 0.1
HIGH_MS = 10_000.0
BUCKETS_PER_DECADE = 40
# upper edges of the log-spaced buckets: each spans a factor 10**(1/40) = 1.059, so a
# percentile read off the histogram is at most 6 % above the true value (never below it)
EDGES_MS: tuple[float, ...] = tuple(
    LOW_MS * 10 ** (i / BUCKETS_PER_DECADE) for i in range(round(math.log10(HIGH_MS / LOW_MS) * BUCKETS_PER_DECADE) + 1)
)


class LagHistogram:
    """Counts of lag samples per bucket; bucket i holds [EDGES_MS[i-1], EDGES_MS[i])."""

    def __init__(self) -> None:
        # index 0: under LOW_MS; index len(EDGES_MS): HIGH_MS and over
        self.counts = [0] * (len(EDGES_MS) + 1)
        self.count = 0
        self.sum_ms = 0.0
        self.max_ms = 0.0

    def add(self, lag_ms: float) -> None:
        lag_ms = max(lag_ms, 0.0)
        self.counts[bisect.bisect_right(EDGES_MS, lag_ms)] += 1
        self.count += 1
        self.sum_ms += lag_ms
        self.max_ms = max(self.max_ms, lag_ms)

    def percentile(self, q: float) -> float:
        """The nearest-rank q-th percentile (0 < q <= 100), as its bucket's upper edge.

        Capped at the exact maximum, so it never exceeds a lag that happened; lags under 0.1 ms
        read as 0.1 ms (or the maximum, if smaller); past 10 s only the maximum is known.
        """
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                upper = EDGES_MS[i] if i < len(EDGES_MS) else self.max_ms
                return min(upper, self.max_ms)
        return self.max_ms  # unreachable: the counts add up to count


class LoopLagMonitor:
    def __init__(self, period_s: float = PERIOD_S) -> None:
        self._period_s = period_s
        self._task: asyncio.Task[None] | None = None
        self.histogram = LagHistogram()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def record(self, lag_ms: float) -> None:
        """One lag sample (what the timer task measures; tests feed samples here directly)."""
        self.histogram.add(lag_ms)

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self._period_s)
            self.record((time.monotonic() - t0 - self._period_s) * 1e3)

    def summary(self) -> dict[str, float]:
        h = self.histogram
        return {"p50": round(h.percentile(50), 2), "p99": round(h.percentile(99), 2), "max": round(h.max_ms, 2)}
