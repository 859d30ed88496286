"""Inspection records in SQLite (WAL), written before a verdict is sent.

One row per inspection; the row holds the verdict message as sent, so unacknowledged
verdicts are resent after a restart. All SQLite work runs on one dedicated thread: never on
the event loop, and serialized without locks.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cellctl.messages import Verdict

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
"""


@dataclass(frozen=True)
class Record:
    verdict: Verdict
    scores: dict[str, float]
    timings_ms: dict[str, float]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Records:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="records")
        self._db: sqlite3.Connection | None = None
        self.next_seq = 1

    async def open(self) -> None:
        self.next_seq = await self._run(self._open)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a recorded verdict survives power loss
        db.executescript(SCHEMA)
        self._db = db
        (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM inspections").fetchone()
        return int(last) + 1

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def take_seq(self) -> int:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq

    async def add(self, record: Record) -> None:
        await self._run(self._add, record)

    def _add(self, r: Record) -> None:
        assert self._db is not None
        v = r.verdict
        self._db.execute(
            "INSERT INTO inspections (seq, cell_id, part_id, profile, model_sha256, verdict, reason,"
            " scores, timings_ms, latency_ms, created_at, message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (v.seq, v.cell_id, v.part_id, v.profile, v.model_sha256, v.verdict.value, v.reason,
             json.dumps(r.scores), json.dumps(r.timings_ms), v.latency_ms, _now(), v.model_dump_json()),
        )

    async def mark(self, seq: int, state: str) -> None:
        await self._run(self._mark, seq, state)

    def _mark(self, seq: int, state: str) -> None:
        assert self._db is not None
        self._db.execute("UPDATE inspections SET ack_state = ?, acked_at = ? WHERE seq = ?", (state, _now(), seq))

    async def pending(self) -> list[Verdict]:
        """Verdicts recorded but not acknowledged (e.g. before a crash), oldest first."""
        rows = await self._run(self._query, "SELECT message FROM inspections WHERE ack_state != 'acked' ORDER BY seq")
        return [Verdict.model_validate_json(m) for (m,) in rows]

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self._run(self._query, sql, *params)

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(sql, params).fetchall()
