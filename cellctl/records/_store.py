"""``Records``: the SQLite file and every read and write of it, on one thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from cellctl.link.protocol import Verdict
from cellctl.records._base import (
    ANSWERED,
    UNDELIVERED,
    Accepted,
    AckState,
    Record,
    RecordsError,
    finite_json,
    transaction,
)
from cellctl.records._migrations import migrate
from cellctl.text import printable

T = TypeVar("T")
log = structlog.get_logger("cellctl.records")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Records:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="records")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a recorded verdict survives power loss
            migrate(db, str(self.path))
        except BaseException:
            db.close()
            raise
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(RecordsError):  # a vanished disk: nothing left to save
                await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise RecordsError(f"records {self.path}: {exc}") from exc

    async def on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection on the records thread (maintenance, fault injection)."""
        return await self._run(lambda: fn(self._conn()))

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RecordsError(f"records {self.path}: not open")
        return self._db

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self._run(self._query, sql, *params)

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    # ------------------------------------------------------------------ parts in the fixture
    async def accept(self, cell_id: str, part_id: str, profile: str, request_id: str | None, boot_id: str) -> int:
        """Record a part as in the fixture; its durable seq (never reused)."""
        return await self._run(self._accept, cell_id, part_id, profile, request_id, boot_id)

    def _accept(self, cell_id: str, part_id: str, profile: str, request_id: str | None, boot_id: str) -> int:
        db = self._conn()
        with transaction(db):
            (last,) = db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM inspections), 0),"
                " COALESCE((SELECT MAX(seq) FROM accepted), 0))"
            ).fetchone()
            seq = int(last) + 1
            db.execute(
                "INSERT INTO accepted (seq, cell_id, part_id, profile, accepted_at, request_id, boot_id)"
                " VALUES (?,?,?,?,?,?,?)",
                (seq, cell_id, part_id, profile, _now(), request_id, boot_id),
            )
        return seq

    async def unjudged(self) -> list[Accepted]:
        """Parts accepted but never judged (the daemon died mid-part), oldest first."""
        rows = await self.query(
            "SELECT seq, part_id, profile, accepted_at, request_id, boot_id FROM accepted ORDER BY seq"
        )
        return [Accepted(*row) for row in rows]

    async def last_accepted(self) -> str | None:
        """The part id of the part most recently taken from the fixture, judged or not."""
        rows = await self.query(
            "SELECT part_id FROM (SELECT seq, part_id FROM accepted UNION ALL"
            " SELECT seq, part_id FROM inspections) ORDER BY seq DESC LIMIT 1"
        )
        return str(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ verdicts
    async def add(self, record: Record) -> None:
        """Record a verdict and take its part off the accepted list, in one transaction."""
        await self._run(self._add, record)

    def _add(self, r: Record) -> None:
        db = self._conn()
        v = r.verdict
        # JSON has no NaN: a non-finite score or distance is written as null (allow_nan=False
        # then only guards that nothing slipped through)
        scores = json.dumps(finite_json(r.scores), allow_nan=False)
        evidence = json.dumps(finite_json(r.evidence), allow_nan=False)
        with transaction(db):
            db.execute(
                "INSERT INTO inspections (seq, cell_id, part_id, profile, model_sha256, verdict, reason,"
                " scores, timings_ms, latency_ms, created_at, message, boot_id, request_id, profile_sha256, bin,"
                " evidence)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    v.seq,
                    v.cell_id,
                    v.part_id,
                    v.profile,
                    v.model_sha256,
                    v.verdict.value,
                    v.reason,
                    scores,
                    json.dumps(r.timings_ms),
                    v.latency_ms,
                    _now(),
                    v.model_dump_json(),
                    v.boot_id,
                    v.request_id,
                    v.profile_sha256,
                    int(v.bin),
                    evidence,
                ),
            )
            db.execute("DELETE FROM accepted WHERE seq = ?", (v.seq,))

    async def mark(self, seq: int, state: AckState, res: int | None = None, detail: str | None = None) -> bool:
        """Set a verdict's ack state (with the robot's result code and detail, if any). An answered
        verdict (acked, acked_late, refused) keeps its state: False then. RecordsError if there
        is no verdict ``seq`` (yet: its record may still wait in the writer's backlog)."""
        return await self._run(self._mark, seq, AckState(state), res, detail)

    def _mark(self, seq: int, state: AckState, res: int | None, detail: str | None) -> bool:
        db = self._conn()
        answered_at = _now() if state in ANSWERED else None
        changed = db.execute(
            "UPDATE inspections SET ack_state = ?, acked_at = COALESCE(?, acked_at),"
            " ack_res = COALESCE(?, ack_res), ack_detail = COALESCE(?, ack_detail)"
            " WHERE seq = ? AND ack_state IN (?, ?)",
            (state.value, answered_at, res, detail, seq, *UNDELIVERED),
        ).rowcount
        if changed:
            return True
        if db.execute("SELECT 1 FROM inspections WHERE seq = ?", (seq,)).fetchone() is None:
            raise RecordsError(f"records {self.path}: no verdict with seq {seq}")
        return False

    async def undelivered(self) -> list[Verdict]:
        """Verdicts recorded and not acknowledged (pending or expired), in seq order."""
        return [verdict for verdict, _ in await self.undelivered_states()]

    async def undelivered_states(self) -> list[tuple[Verdict, AckState]]:
        """``undelivered()`` with each verdict's state (an ack of an expired one is late)."""
        rows = await self.query(
            "SELECT seq, message, ack_state FROM inspections WHERE ack_state IN (?, ?) ORDER BY seq", *UNDELIVERED
        )
        verdicts = []
        for seq, message, state in rows:
            try:
                verdicts.append((Verdict.model_validate_json(message), AckState(state)))
            except ValidationError as exc:
                # kept in the file for a person to look at; one bad row must not stop the cell
                error = printable(str(exc.errors(include_url=False)[0]["msg"]))
                log.error("records.unreadable_verdict", seq=seq, path=str(self.path), error=error)
        return verdicts

    async def evidence(self, seq: int) -> dict[str, Any] | None:
        """Why part ``seq`` was judged as it was, beside its scores (``Record.evidence`` as
        written, non-finite numbers as None): for a person auditing a verdict. ``{}`` for a
        part judged before schema 4 or never inspected; None if no verdict ``seq`` is recorded."""
        rows = await self.query("SELECT evidence FROM inspections WHERE seq = ?", seq)
        if not rows:
            return None
        try:
            value = json.loads(rows[0][0])
        except (TypeError, ValueError) as exc:
            raise RecordsError(f"records {self.path}: the evidence of seq {seq} is not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise RecordsError(f"records {self.path}: the evidence of seq {seq} is not a JSON object")
        return value
