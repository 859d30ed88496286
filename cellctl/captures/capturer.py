"""The daemon's side of the capture store: after a part's verdict is published, choose
whether to keep it (select.py) and write it on a thread of its own.

Never in the way of a verdict: the choice is a few comparisons on the loop, the PNG encoding
and the disk are on the capture thread, at most ``MAX_PENDING`` parts wait for it (a slow disk
drops captures, counted and logged, and never holds frames of many parts in memory), and
whatever goes wrong with a capture is logged and counted, never raised into the pipeline.
"""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from cellctl.captures.select import capture_reasons
from cellctl.captures.store import Capture, CaptureStore
from cellctl.config import CaptureSettings
from cellctl.evaluation import STRIP_FILE, head_file
from cellctl.pipeline.acquire import Acquisition
from cellctl.pipeline.analyse import PartResult

log = structlog.get_logger("cellctl.captures")

MAX_PENDING = 2  # parts waiting for the capture thread; beyond, a capture is dropped
MB = 1_000_000


class Capturer:
    def __init__(self, root: Path, settings: CaptureSettings, cell_id: str) -> None:
        self.settings = settings
        self.cell_id = cell_id
        self.store = CaptureStore(root, int(settings.budget_mb * MB))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="captures")
        self._pending = 0  # raised on the loop, lowered on the capture thread: under the lock
        self._lock = threading.Lock()
        self.dropped_busy = 0

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.store.open)
        log.info("captures.open", dir=str(self.store.root), **self.store.health())

    async def close(self) -> None:
        """Finish the captures already handed over (at most MAX_PENDING), then stop the thread;
        waited for off the loop (a slow disk must not stall the loop while the cell stops)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def offer(self, acq: Acquisition, result: PartResult) -> Future[Path | None] | None:
        """Hand the part to the capture thread if it is worth keeping; the write's future, or
        None when it is not kept (not chosen, no frames, or the thread is behind)."""
        rp = acq.profile
        if rp is None:
            return None
        threshold = rp.profile.decision.threshold
        problems = result.evidence.get("view_problems", {})
        ids = acq.ids()
        why = capture_reasons(
            result.decision.outcome, result.scores, problems, threshold, self.settings, self.cell_id, acq.seq
        )
        # an acquisition cut short has fewer frames than positions: keep those it has
        angles = rp.profile.head_positions_deg
        images = {head_file(a): (f.data, f.pixel_format) for a, f in zip(angles, acq.head_frames, strict=False)}
        if acq.strip is not None:
            images[STRIP_FILE] = (acq.strip.data, acq.strip.pixel_format)
        if not why or not images:
            return None
        with self._lock:
            busy = self._pending >= MAX_PENDING
            if not busy:
                self._pending += 1
        if busy:
            self.dropped_busy += 1
            log.warning("capture.dropped", **ids, why="the capture thread is behind", reasons=list(why))
            return None
        record = _record(acq, result, why, threshold, self.cell_id)
        capture = Capture(acq.seq, acq.part_id, datetime.now(UTC), record, images)
        future = self._executor.submit(self._write, capture, ids)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Path | None]) -> None:
        with self._lock:
            self._pending -= 1

    def _write(self, capture: Capture, ids: dict[str, object]) -> Path | None:
        try:
            path = self.store.put(capture)
        except OSError as exc:  # counted by the store; the part and the cell carry on
            log.error("capture.failed", **ids, error=str(exc))
            return None
        if not path.exists():  # larger than the whole budget: written, then dropped at once
            log.warning(
                "capture.dropped", **ids, why=f"larger than the store's budget of {self.settings.budget_mb:g} MB"
            )
            return None
        log.info("capture.kept", **ids, capture=path.name, why=list(capture.record["why"]))
        return path

    def health(self) -> dict[str, Any]:
        return {**self.store.health(), "dropped_busy": self.dropped_busy, "pending": self._pending}


def _record(
    acq: Acquisition, result: PartResult, why: tuple[str, ...], threshold: float, cell_id: str
) -> dict[str, Any]:
    """What a quality engineer sorting the capture, and a trainer reading it, need: the part,
    the model and profile it was judged under, the verdict, every view's score, distance and
    problem, and why it was kept."""
    ood = result.evidence.get("ood", {})
    problems = result.evidence.get("view_problems", {})
    names = sorted({*result.scores, *ood, *problems})
    return {
        "cell_id": cell_id,
        "seq": result.seq,
        "part_id": result.part_id,
        "request_id": result.request_id,
        "profile": result.profile,
        "profile_sha256": result.profile_sha256,
        "model_sha256": result.model_sha256,
        "outcome": result.decision.outcome.value,
        "reason": result.decision.reason,
        "threshold": threshold,
        "why": list(why),
        "views": {
            n: {"score": _finite(result.scores.get(n)), "ood": ood.get(n), "problem": problems.get(n)} for n in names
        },
        "coverage": result.evidence.get("coverage", {}),
        "head_positions_deg": list(acq.profile.profile.head_positions_deg) if acq.profile else [],
    }


def _finite(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else None
