"""The end of a part's way: its verdict recorded durably, then handed to the outbox.

Nothing is PASSed without a durable record. When the records cannot be written (disk full,
read-only, vanished) the verdict becomes RECHECK, is still sent (the robot must not keep a
part it cannot sort), its record waits in a backlog, and the cell is blocked: no further part
is asked for. A retry loop writes the backlog as soon as the database takes writes again and
unblocks the cell; nothing recorded or to be recorded is lost while the daemon lives, and a
part whose verdict record was lost with the process is judged "interrupted" at the next start.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import structlog

from cellctl.decision import Decision
from cellctl.fault import Fault, Step
from cellctl.inspection import OOD_PREFIX
from cellctl.link.protocol import MAX_SCORES, Verdict
from cellctl.outbox import Outbox
from cellctl.outcome import BIN_OF, Outcome
from cellctl.pipeline.analyse import PartResult
from cellctl.records import Record, Records, RecordsError
from cellctl.state import CellState
from cellctl.text import TEXT_MAX, printable

log = structlog.get_logger("cellctl.pipeline.publish")

RETRY_S = 0.5  # how often a blocked cell tries the records again
BLOCK_KEY = "records"
GUARD_KEYS = ("ood_views", "ood_parts", "not_located", "coverage_short", "out_of_focus", "repeated")


def guard_findings(evidence: Mapping[str, Any], outcome: Outcome) -> dict[str, int]:
    """What the guard found on one judged part, as the cell counts it (``GUARD_KEYS``):
    ``ood_views``, the views out of the model's distribution, and ``ood_parts`` 1 if there is
    one, whatever the verdict; for a part judged RECHECK, ``not_located`` 1 if the part was not
    found (or not this profile's part in its place) in a view, ``coverage_short`` 1 if the
    tiles covered less than the profile requires (or a bare patch left surface unseen),
    ``out_of_focus`` 1 if a view was less sharp (or smoother) than the profile's guard allows
    and ``repeated`` 1 if a view repeated another view or its own lines (the part did not
    turn). ``evidence`` as a Record holds it, read back from the records or not: anything of
    another shape counts as nothing found."""
    view_problems = evidence.get("view_problems")
    ood = sum(
        1
        for problem in (view_problems.values() if isinstance(view_problems, Mapping) else ())
        if isinstance(problem, str) and problem.startswith(OOD_PREFIX)
    )
    recheck = outcome is Outcome.RECHECK
    return {
        "ood_views": ood,
        "ood_parts": int(ood > 0),
        "not_located": int(recheck and _listed(evidence, "not_located")),
        "coverage_short": int(recheck and _listed(evidence, "short_of_coverage")),
        "out_of_focus": int(recheck and _listed(evidence, "out_of_focus")),
        "repeated": int(recheck and _listed(evidence, "repeated")),
    }


def _listed(evidence: Mapping[str, Any], key: str) -> bool:
    value = evidence.get(key)
    return isinstance(value, list | tuple) and len(value) > 0


class DurableWriter:
    """Writes to the records, blocking the cell while they fail and retrying until they work."""

    def __init__(self, records: Records, state: CellState) -> None:
        self.records = records
        self.state = state
        self.backlog: list[Record] = []

    async def accept(
        self, cell_id: str, part_id: str, profile: str, request_id: str | None, boot_id: str, stop: asyncio.Event
    ) -> int | None:
        """The part's durable seq; while the records fail, retried until they work or ``stop``."""
        while True:
            try:
                seq = await self.records.accept(cell_id, part_id, profile, request_id, boot_id)
            except RecordsError as exc:
                self._failed(exc)
            else:
                await self.flush()
                return seq
            if await _wait(stop, RETRY_S):
                return None

    async def add(self, record: Record) -> bool:
        """True once the record is durable; False: it waits in the backlog, the cell is blocked."""
        await self.flush()
        if not self.backlog:
            try:
                await self.records.add(record)
                return True
            except RecordsError as exc:
                self._failed(exc)
        self.backlog.append(record)
        return False

    async def flush(self) -> None:
        """Write the backlog in order; unblock the cell once it is empty."""
        while self.backlog:
            try:
                await self.records.add(self.backlog[0])
            except RecordsError as exc:
                self._failed(exc)
                return
            written = self.backlog.pop(0)
            log.info(
                "record.recovered",
                seq=written.verdict.seq,
                part_id=written.verdict.part_id,
                profile=written.verdict.profile,
            )
        self.state.unblock(BLOCK_KEY)

    async def retry_loop(self) -> None:
        while True:
            await asyncio.sleep(RETRY_S)
            if self.backlog:  # a failed accept retries itself, in accept()
                await self.flush()

    def _failed(self, exc: RecordsError) -> None:
        self.state.block(BLOCK_KEY, f"records not writable: {exc}")


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    """True if ``event`` was set within ``timeout_s``."""
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        return False
    return True


class Publisher:
    def __init__(self, cell_id: str, boot_id: str, writer: DurableWriter, outbox: Outbox) -> None:
        self.cell_id = cell_id
        self.boot_id = boot_id
        self.writer = writer
        self.outbox = outbox
        self.counts: Counter[str] = Counter()
        self.guard: Counter[str] = Counter(dict.fromkeys(GUARD_KEYS, 0))  # since start: guard_findings

    def verdict(self, result: PartResult, decision: Decision) -> Verdict:
        return Verdict(
            cell_id=self.cell_id,
            boot_id=self.boot_id,
            seq=result.seq,
            request_id=result.request_id,
            part_id=result.part_id,
            profile=result.profile,
            profile_sha256=result.profile_sha256,
            model_sha256=result.model_sha256,
            verdict=decision.outcome,
            bin=BIN_OF[decision.outcome],
            # a fault's reason quotes device and OS messages: made one printable line that fits
            reason=printable(decision.reason)[:TEXT_MAX],
            scores=_wire_scores(result.scores),
            max_score=decision.max_score,
            worst_view=decision.worst_view,
            latency_ms=round(max(0.0, time.monotonic() - result.started_s) * 1e3, 3),
        )

    async def publish(self, result: PartResult) -> Verdict:
        """Record, then hand to the outbox; a verdict that cannot be recorded goes out as RECHECK."""
        verdict = self.verdict(result, result.decision)
        t0 = time.monotonic()
        durable = await self.writer.add(Record(verdict, result.scores, result.timings_ms, result.evidence))
        result.timings_ms["record"] = (time.monotonic() - t0) * 1e3
        if not durable:
            blocked = self.writer.state.blocked_reasons.get(BLOCK_KEY, "records not writable")
            fault = Fault(Step.RECORD, blocked)
            verdict = self.verdict(
                result, Decision(Outcome.RECHECK, fault.reason, result.decision.max_score, result.decision.worst_view)
            )
            self.writer.backlog[-1] = Record(verdict, result.scores, result.timings_ms, result.evidence)
        self.counts[verdict.verdict.value] += 1
        self.guard.update(guard_findings(result.evidence, verdict.verdict))
        log.info(
            "part.verdict",
            part_id=verdict.part_id,
            seq=verdict.seq,
            profile=verdict.profile,
            verdict=verdict.verdict.value,
            reason=verdict.reason,
            max_score=verdict.max_score,
            latency_ms=verdict.latency_ms,
            durable=durable,
        )
        self.outbox.put(verdict)
        return verdict


def _wire_scores(scores: dict[str, float]) -> dict[str, float | None]:
    """Per-view scores as the protocol carries them: JSON has no NaN, so a non-finite one is null."""
    return {view: (float(p) if math.isfinite(p) else None) for view, p in list(scores.items())[:MAX_SCORES]}
