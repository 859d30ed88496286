"""The ordered outbox: recorded verdicts go to the robot in seq order until it acknowledges them.

One task (``run``) drains the verdicts waiting to be sent, lowest seq first, with at most
``window`` in flight; each verdict in flight is resent after ``ack_timeout_s``, then after twice
that, doubling up to ``ack_backoff_max_s``; nothing is sent while the link is down. A verdict
not acknowledged ``delivery_deadline_s`` after its first send is ``expired`` (an error): it
leaves the window, and is resent at every reconnection (``on_link_up``) and every start
(``replay``) until an ack comes (then ``acked_late``). It is never given up automatically.

An ack counts only if it names this cell, a seq the outbox sent and has not seen answered, the
boot id and the bin of that verdict; anything else is counted and logged by reason, and changes
nothing. ``res != 0`` is the robot refusing the verdict: an alarm, recorded ``refused``, not
resent (the robot keeps the part out of every bin). While ``window`` verdicts wait for their
ack the cell is blocked ("outbox"): no part is asked for that could not be reported.

The records are the truth: what the outbox could not mark (records failing) stays undelivered
there, is marked again later, and is resent at the next start if the daemon stops first; the
bridge deduplicates by (cell, boot, seq), so a resend never acts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import Counter, OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import structlog

from cellctl.config import RobotLinkSettings
from cellctl.link.protocol import Ack, Verdict
from cellctl.records import AckState, Records, RecordsError
from cellctl.state import CellState

log = structlog.get_logger("cellctl.outbox")

DRAIN_S = 5.0  # on stop, how long verdicts in flight may still be acknowledged
MARK_RETRY_S = 1.0  # records that refused an ack state are tried again this often
LINK_POLL_S = 1.0  # the longest the task sleeps without looking at the link
RECENT_ANSWERED = 4096  # seqs remembered as answered, to tell a duplicate ack from an unknown one
BLOCK_KEY = "outbox"


class AckRejection(StrEnum):
    """Why an ack changed nothing; counted per reason."""

    UNKNOWN_SEQ = "unknown_seq"  # no verdict with that seq is waiting for an ack
    DUPLICATE = "duplicate"  # the verdict was already answered in this run
    WRONG_CELL = "wrong_cell"
    WRONG_BOOT = "wrong_boot"  # the seq of another run of this cell
    WRONG_BIN = "wrong_bin"  # the robot would put the part elsewhere than the verdict says


class VerdictLink(Protocol):
    """What the outbox needs of the robot link (cellctl.link.client.RobotLink)."""

    @property
    def up(self) -> bool:
        """True while the bridge is heard."""
        ...

    def send_verdict(self, verdict: Verdict) -> bool:
        """Queue ``verdict`` without blocking; False if it could not be queued."""
        ...


@dataclass
class _Entry:
    verdict: Verdict
    expired: bool = False  # its record says expired: an ack now is late
    replayed: bool = False  # from the records of an earlier run, which may have sent it
    sends: int = 0
    first_sent_s: float | None = None  # loop time of the first send since it (re-)entered the window
    due_s: float = 0.0  # next resend
    backoff_s: float = 0.0  # the wait after the next send

    @property
    def seq(self) -> int:
        return self.verdict.seq


@dataclass
class _Mark:
    verdict: Verdict
    state: AckState
    res: int | None = None
    detail: str | None = None
    failures: int = 0


def _ids(verdict: Verdict) -> dict[str, Any]:
    return {"part_id": verdict.part_id, "seq": verdict.seq, "profile": verdict.profile}


class Outbox:
    def __init__(
        self, link: VerdictLink, records: Records, state: CellState, settings: RobotLinkSettings, cell_id: str
    ) -> None:
        self.link = link
        self.records = records
        self.state = state
        self.settings = settings
        self.cell_id = cell_id
        self._waiting: dict[int, _Entry] = {}
        self._order: list[int] = []  # heap of waiting seqs (stale ones skipped)
        self._in_flight: dict[int, _Entry] = {}
        self._expired: dict[int, _Entry] = {}
        self._answered: OrderedDict[int, None] = OrderedDict()
        self._marks: list[_Mark] = []
        self._mark_retry_s = 0.0
        self.counts: Counter[str] = Counter()
        self.acks_rejected: Counter[str] = Counter()
        self._wake = asyncio.Event()  # something to do
        self._passed = asyncio.Event()  # the task finished a pass (drain waits on it)
        self._running = False
        self._closing = False

    # ------------------------------------------------------------------ entries
    async def replay(self) -> None:
        """Queue what earlier runs recorded and never had acknowledged, in seq order."""
        for verdict, ack_state in await self.records.undelivered_states():
            if self._known(verdict.seq):
                continue
            self._queue(_Entry(verdict, expired=ack_state is AckState.EXPIRED, replayed=True))
            log.info("verdict.replay", **_ids(verdict), ack_state=ack_state.value, boot_id=verdict.boot_id)
        self._wake.set()

    def put(self, verdict: Verdict) -> None:
        """Send ``verdict`` (already recorded) in its turn."""
        if self._known(verdict.seq):
            log.warning("verdict.put_twice", **_ids(verdict))
            return
        self._queue(_Entry(verdict))
        self._wake.set()

    def _known(self, seq: int) -> bool:
        return seq in self._waiting or seq in self._in_flight or seq in self._expired

    def _queue(self, entry: _Entry) -> None:
        self._waiting[entry.seq] = entry
        heapq.heappush(self._order, entry.seq)

    def _next_waiting(self) -> _Entry | None:
        while self._order:
            entry = self._waiting.pop(heapq.heappop(self._order), None)
            if entry is not None:
                return entry
        return None

    # ------------------------------------------------------------------ the task
    async def run(self) -> None:
        """Send, resend and expire until ``drain`` ends it (or the task is cancelled)."""
        loop = asyncio.get_running_loop()
        self._running = True
        try:
            while not self._closing:
                self._wake.clear()  # before the pass: a wake-up during it starts another
                now = loop.time()
                self._expire(now)
                if self.link.up:
                    self._send_due(now)
                self._update_block()
                await self._write_marks(now)
                self._passed.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sleep_s(loop.time()))
        finally:
            self._running = False
            self._passed.set()

    def _send_due(self, now: float) -> None:
        for seq in sorted(self._in_flight):
            if self._in_flight[seq].due_s <= now:
                self._send(self._in_flight[seq], now)
        while len(self._in_flight) < self.settings.window:
            entry = self._next_waiting()
            if entry is None:
                break
            self._in_flight[entry.seq] = entry
            self._send(entry, now)

    def _send(self, entry: _Entry, now: float) -> None:
        queued = self.link.send_verdict(entry.verdict)
        entry.sends += 1
        if entry.first_sent_s is None:
            entry.first_sent_s = now
            entry.backoff_s = self.settings.ack_timeout_s
            log.debug("verdict.sent", **_ids(entry.verdict), queued=queued, backoff_s=entry.backoff_s)
        else:
            log.info(
                "verdict.resent", **_ids(entry.verdict), sends=entry.sends, queued=queued, backoff_s=entry.backoff_s
            )
        entry.due_s = now + entry.backoff_s
        entry.backoff_s = min(entry.backoff_s * 2, self.settings.ack_backoff_max_s)

    def _expire(self, now: float) -> None:
        deadline_s = self.settings.delivery_deadline_s
        for seq in sorted(self._in_flight):
            entry = self._in_flight[seq]
            if entry.first_sent_s is None or now - entry.first_sent_s < deadline_s:
                continue
            del self._in_flight[seq]
            entry.expired = True
            self._expired[seq] = entry
            self.counts["expirations"] += 1
            log.error(
                "verdict.expired",
                **_ids(entry.verdict),
                sends=entry.sends,
                deadline_s=deadline_s,
                note="resent at reconnection and at every start until acknowledged",
            )
            self._marks.append(_Mark(entry.verdict, AckState.EXPIRED))

    def _update_block(self) -> None:
        window = self.settings.window
        if len(self._in_flight) >= window:
            oldest = min(self._in_flight)
            self.state.block(BLOCK_KEY, f"{window} verdicts not acknowledged by the robot (oldest seq {oldest})")
        else:
            self.state.unblock(BLOCK_KEY)

    def _sleep_s(self, now: float) -> float:
        wake = [now + LINK_POLL_S]
        if self._marks:
            wake.append(self._mark_retry_s)
        for entry in self._in_flight.values():
            if entry.first_sent_s is not None:
                wake.append(entry.first_sent_s + self.settings.delivery_deadline_s)
            if self.link.up:
                wake.append(entry.due_s)
        return max(0.0, min(wake) - now)

    async def _write_marks(self, now: float) -> None:
        """Write the ack states in the order they came; keep what the records refuse for later."""
        if not self._marks or now < self._mark_retry_s:
            return
        written: set[int] = set()
        failed = False
        try:
            for mark in list(self._marks):
                try:
                    await self.records.mark(mark.verdict.seq, mark.state, mark.res, mark.detail)
                except RecordsError as exc:
                    failed = True
                    mark.failures += 1
                    if mark.failures == 1:  # once per mark, not at every retry
                        log.warning(
                            "verdict.mark_failed",
                            **_ids(mark.verdict),
                            state=mark.state.value,
                            error=str(exc),
                            note="still undelivered in the records: marked later, or resent at the next start",
                        )
                    continue
                written.add(id(mark))
                if mark.failures:
                    log.info("verdict.mark_recovered", **_ids(mark.verdict), state=mark.state.value)
        finally:
            # in order, with the marks that came in meanwhile; a cancelled pass keeps the rest
            self._marks = [mark for mark in self._marks if id(mark) not in written]
        if failed:
            self._mark_retry_s = now + MARK_RETRY_S

    # ------------------------------------------------------------------ link callbacks
    def on_link_up(self) -> None:
        """The bridge is back (or restarted): resend everything not acknowledged, now."""
        now = asyncio.get_running_loop().time()
        for entry in self._in_flight.values():
            entry.due_s = now
            entry.backoff_s = self.settings.ack_timeout_s
        for entry in self._expired.values():
            entry.first_sent_s = None  # a fresh deadline from its next send
            self._queue(entry)
        log.info("outbox.resending", in_flight=len(self._in_flight), expired=len(self._expired))
        self._expired.clear()
        self._wake.set()

    def on_ack(self, ack: Ack) -> None:
        entry = self._check(ack)
        if isinstance(entry, AckRejection):
            rejection = entry
            self.acks_rejected[rejection.value] += 1
            known = self._in_flight.get(ack.seq) or self._expired.get(ack.seq) or self._waiting.get(ack.seq)
            log.warning(
                "robot_link.ack_rejected",
                reason=rejection.value,
                seq=ack.seq,
                part_id=known.verdict.part_id if known else None,
                profile=known.verdict.profile if known else None,
                cell_id=ack.cell_id,
                boot_id=ack.boot_id,
                bin=int(ack.bin),
                res=ack.res,
            )
            return
        for outstanding in (self._in_flight, self._expired, self._waiting):
            outstanding.pop(ack.seq, None)
        self._answered[ack.seq] = None
        while len(self._answered) > RECENT_ANSWERED:
            self._answered.popitem(last=False)
        ids = _ids(entry.verdict)
        if ack.res == 0:
            state = AckState.ACKED_LATE if entry.expired else AckState.ACKED
            log.info("verdict.acked", **ids, state=state.value, bin=int(ack.bin), sends=entry.sends)
        else:
            state = AckState.REFUSED
            log.error(
                "verdict.refused_by_robot",
                **ids,
                res=ack.res,
                detail=ack.detail,
                bin=int(ack.bin),
                note="the robot keeps the part out of every bin; not resent",
            )
        self.counts[state.value] += 1
        self._marks.append(_Mark(entry.verdict, state, ack.res, ack.detail))
        self._update_block()
        self._wake.set()

    def _check(self, ack: Ack) -> _Entry | AckRejection:
        """The verdict ``ack`` answers, or why it answers none."""
        if ack.cell_id != self.cell_id:
            return AckRejection.WRONG_CELL
        entry = self._in_flight.get(ack.seq) or self._expired.get(ack.seq)
        waiting = self._waiting.get(ack.seq)
        if entry is None and waiting is not None and (waiting.sends or waiting.replayed):
            entry = waiting  # sent before (by this run or an earlier one), queued again
        if entry is None:
            return AckRejection.DUPLICATE if ack.seq in self._answered else AckRejection.UNKNOWN_SEQ
        if ack.boot_id != entry.verdict.boot_id:
            return AckRejection.WRONG_BOOT
        if ack.bin != entry.verdict.bin:
            return AckRejection.WRONG_BIN
        return entry

    # ------------------------------------------------------------------ stop and health
    async def drain(self) -> None:
        """Give the verdicts in flight up to DRAIN_S to be acknowledged and their states to be
        written, then end the task. What is left stays undelivered in the records."""
        loop = asyncio.get_running_loop()
        start_s = loop.time()
        acks_until_s = start_s + DRAIN_S * 0.8  # the rest is the task's, to finish its pass and end
        deadline_s = start_s + DRAIN_S
        while self._running and not self._settled() and loop.time() < acks_until_s:
            await self._next_pass(acks_until_s - loop.time())
        self._closing = True
        self._wake.set()
        while self._running and loop.time() < deadline_s:
            await self._next_pass(deadline_s - loop.time())
        if not self._running and self._marks:
            self._mark_retry_s = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._write_marks(loop.time()), max(0.0, deadline_s - loop.time()))
        self.state.unblock(BLOCK_KEY)
        log.info(
            "outbox.drained",
            unacknowledged=len(self._in_flight) + len(self._waiting) + len(self._expired),
            states_unwritten=len(self._marks),
        )

    async def _next_pass(self, timeout_s: float) -> None:
        self._passed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._passed.wait(), timeout_s)

    def _settled(self) -> bool:
        """Nothing more will happen before the stop: all answered, or the link is down."""
        if self._marks:
            return False
        return not self.link.up or not (self._in_flight or self._waiting)

    def health(self) -> dict[str, Any]:
        return {
            "in_flight": len(self._in_flight),
            "waiting": len(self._waiting),
            "expired": len(self._expired),
            "acked": self.counts[AckState.ACKED.value],
            "acked_late": self.counts[AckState.ACKED_LATE.value],
            "refused": self.counts[AckState.REFUSED.value],
            "acks_rejected": dict(self.acks_rejected),
        }
