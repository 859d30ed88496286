"""Inspection records in SQLite (WAL, synchronous FULL), written before a verdict is sent.

Two tables. ``accepted`` holds the parts in the fixture: a row is written (and fsynced) when a
part is taken, before acquisition starts, so its seq is durable and never reused, and a part
whose daemon dies mid-inspection is found at the next start and judged RECHECK
("interrupted"). ``inspections`` holds one row per judged part with the verdict message as
sent; judging a part moves it from one table to the other in one transaction. The schema
version is ``PRAGMA user_version``.

All SQLite work runs on one dedicated thread: never on the event loop, serialized without
locks. Every SQLite or OS failure (disk full, read-only, file vanished) becomes a
``RecordsError``: the caller decides what the cell does about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cellctl.drivers import CellError
from cellctl.messages import Verdict

T = TypeVar("T")
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS inspections (
    seq          INTEGER PRIMARY KEY,   -- verdict sequence number of this cell
    cell_id      TEXT NOT NULL,
    part_id      TEXT NOT NULL,
    profile      TEXT NOT NULL,
    model_sha256 TEXT,
    verdict      TEXT NOT NULL,         -- PASS | REJECT | RECHECK
    reason       TEXT NOT NULL,
    scores       TEXT NOT NULL,         -- JSON {view: defect probability}
    timings_ms   TEXT NOT NULL,         -- JSON {step: milliseconds}
    latency_ms   REAL NOT NULL,
    created_at   TEXT NOT NULL,         -- UTC, ISO 8601
    message      TEXT NOT NULL,         -- the verdict exactly as sent
    ack_state    TEXT NOT NULL DEFAULT 'pending',  -- pending | acked | expired
    acked_at     TEXT
);
CREATE INDEX IF NOT EXISTS inspections_pending ON inspections (ack_state) WHERE ack_state != 'acked';
CREATE TABLE IF NOT EXISTS accepted (
    seq          INTEGER PRIMARY KEY,   -- taken when the part was accepted; the verdict carries it
    cell_id      TEXT NOT NULL,
    part_id      TEXT NOT NULL,
    profile      TEXT NOT NULL,
    accepted_at  TEXT NOT NULL
);
"""


class RecordsError(CellError):
    """The records database could not be read or written."""


@dataclass(frozen=True)
class Record:
    verdict: Verdict
    scores: dict[str, float]
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Accepted:
    seq: int
    part_id: str
    profile: str
    accepted_at: str


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
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RecordsError(
                    f"records {self.path}: schema version {version} is newer than this cellctl ({SCHEMA_VERSION})"
                )
            db.executescript(SCHEMA)  # version 1 had only `inspections`: creating `accepted` migrates it
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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

    # ------------------------------------------------------------------ parts in the fixture
    async def accept(self, cell_id: str, part_id: str, profile: str) -> int:
        """Record a part as in the fixture; its durable seq (never reused)."""
        return await self._run(self._accept, cell_id, part_id, profile)

    def _accept(self, cell_id: str, part_id: str, profile: str) -> int:
        db = self._conn()
        with _transaction(db):
            (last,) = db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM inspections), 0),"
                " COALESCE((SELECT MAX(seq) FROM accepted), 0))"
            ).fetchone()
            seq = int(last) + 1
            db.execute(
                "INSERT INTO accepted (seq, cell_id, part_id, profile, accepted_at) VALUES (?,?,?,?,?)",
                (seq, cell_id, part_id, profile, _now()),
            )
        return seq

    async def unjudged(self) -> list[Accepted]:
        """Parts accepted but never judged (the daemon died mid-part), oldest first."""
        rows = await self.query("SELECT seq, part_id, profile, accepted_at FROM accepted ORDER BY seq")
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
        with _transaction(db):
            db.execute(
                "INSERT INTO inspections (seq, cell_id, part_id, profile, model_sha256, verdict, reason,"
                " scores, timings_ms, latency_ms, created_at, message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    v.seq,
                    v.cell_id,
                    v.part_id,
                    v.profile,
                    v.model_sha256,
                    v.verdict.value,
                    v.reason,
                    json.dumps(r.scores),
                    json.dumps(r.timings_ms),
                    v.latency_ms,
                    _now(),
                    v.model_dump_json(),
                ),
            )
            db.execute("DELETE FROM accepted WHERE seq = ?", (v.seq,))

    async def mark(self, seq: int, state: str) -> None:
        await self._run(self._mark, seq, state)

    def _mark(self, seq: int, state: str) -> None:
        self._conn().execute("UPDATE inspections SET ack_state = ?, acked_at = ? WHERE seq = ?", (state, _now(), seq))

    async def pending(self) -> list[Verdict]:
        """Verdicts recorded but not acknowledged (e.g. before a crash), oldest first."""
        rows = await self.query("SELECT message FROM inspections WHERE ack_state != 'acked' ORDER BY seq")
        return [Verdict.model_validate_json(m) for (m,) in rows]

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self._run(self._query, sql, *params)

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()


class _transaction:
    """BEGIN IMMEDIATE .. COMMIT, rolled back on any error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")
