"""Which verdicts the robot already acted on, so that a resent verdict acts once.

A verdict is identified by (cell_id, boot_id, seq). Once ``robot.sort`` returned, the bridge
remembers the robot's answer (res, detail) and the bin it acknowledged; a resend of that
verdict (its ack got lost) is acknowledged again from here without calling the robot.

``Dedupe`` keeps the last ``max_entries`` in memory (the simulator, tests); ``SqliteDedupe``
keeps them in a SQLite file so that a restarted ``cellctl bridge`` still knows them. Its
SQLite work runs on one worker thread of its own (the connection never leaves that thread),
never on the event loop. Both are bounded: the oldest entries are forgotten first, long after
any cell stopped resending them (a cell resends for ``delivery_deadline_s`` and after
reconnections; 100,000 verdicts are days of production).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cellctl.drivers import CellError

T = TypeVar("T")
MAX_ENTRIES = 100_000
PRUNE_EVERY = 1_000  # SqliteDedupe trims its table once per this many new entries


@dataclass(frozen=True)
class Key:
    cell_id: str
    boot_id: str
    seq: int


@dataclass(frozen=True)
class Completed:
    """What the bridge acknowledged for one verdict: the robot's answer and the verdict's bin."""

    res: int
    detail: str | None
    bin: int


class DedupeError(CellError):
    """The dedupe file cannot be opened or written."""


class Dedupe:
    """In memory, the last ``max_entries`` completed verdicts (lost when the process ends)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._done: OrderedDict[Key, Completed] = OrderedDict()

    async def open(self) -> None:
        """Ready the store (the bridge calls it at every start)."""

    async def close(self) -> None:
        """Release the store (the bridge calls it at every close); ``open`` may follow."""

    async def get(self, key: Key) -> Completed | None:
        return self._done.get(key)

    async def put(self, key: Key, completed: Completed) -> None:
        self._done[key] = completed
        self._done.move_to_end(key)
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)

    async def count(self) -> int:
        return len(self._done)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS completed (
    cell_id TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
    res INTEGER NOT NULL, detail TEXT, bin INTEGER NOT NULL,
    PRIMARY KEY (cell_id, boot_id, seq)
)
"""


class SqliteDedupe(Dedupe):
    """On disk (``path``), survives a restart of the bridge; at most ``max_entries`` rows."""

    def __init__(self, path: Path, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(max_entries)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._puts = 0

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedupe-sqlite")
        try:
            await self._run(self._open)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(pool, self._close)
        finally:
            pool.shutdown(wait=False)

    async def get(self, key: Key) -> Completed | None:
        return await self._run(self._get, key)

    async def put(self, key: Key, completed: Completed) -> None:
        await self._run(self._put, key, completed)

    async def count(self) -> int:
        return await self._run(self._count)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        if self._pool is None:
            raise DedupeError(f"dedupe store {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    # everything below runs on the worker thread

    def _open(self) -> None:
        try:
            # check_same_thread stays on: the connection is made, used and closed by the worker
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: an ack is sent only after its entry is on disk; a crash right after the ack
            # must not turn the cell's resend into a second sort
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self._close()
            raise DedupeError(f"dedupe store {self.path}: {exc}") from None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _get(self, key: Key) -> Completed | None:
        assert self._db is not None
        row = self._db.execute(
            "SELECT res, detail, bin FROM completed WHERE cell_id = ? AND boot_id = ? AND seq = ?",
            (key.cell_id, key.boot_id, key.seq),
        ).fetchone()
        return None if row is None else Completed(res=row[0], detail=row[1], bin=row[2])

    def _put(self, key: Key, completed: Completed) -> None:
        assert self._db is not None
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO completed (cell_id, boot_id, seq, res, detail, bin) VALUES (?, ?, ?, ?, ?, ?)",
                (key.cell_id, key.boot_id, key.seq, completed.res, completed.detail, completed.bin),
            )
            self._puts += 1
            if self._puts % PRUNE_EVERY == 0:
                self._prune()
        except sqlite3.Error as exc:
            raise DedupeError(f"dedupe store {self.path}: {exc}") from None

    def _prune(self) -> None:
        # rowids grow with every insert (INSERT OR REPLACE gives a replaced row a new one),
        # so the lowest rowids are the oldest entries
        assert self._db is not None
        self._db.execute(
            "DELETE FROM completed WHERE rowid <= (SELECT MAX(rowid) FROM completed) - ?", (self.max_entries,)
        )

    def _count(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT COUNT(*) FROM completed").fetchone()[0])
