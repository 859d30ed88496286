from __future__ import annotations

import contextlib
import sqlite3

import pytest

from cellctl.messages import Bin, Outcome, Verdict
from cellctl.records import SCHEMA, Record, Records, RecordsError


def _record(seq: int, outcome: Outcome = Outcome.PASS, part_id: str | None = None) -> Record:
    verdict = Verdict(
        cell_id="c",
        seq=seq,
        part_id=part_id or f"P{seq}",
        profile="m8x40-hex",
        verdict=outcome,
        bin=Bin.GOOD if outcome is Outcome.PASS else Bin.RECHECK,
        reason="r",
        max_score=0.2,
        latency_ms=40.0,
    )
    return Record(verdict, {"head@0": 0.2}, {"infer": 3.0})


async def test_records_survive_reopen_and_keep_unacknowledged_verdicts(tmp_path):
    path = tmp_path / "records.db"
    records = Records(path)
    await records.open()
    for i in range(3):
        seq = await records.accept("c", f"P{i + 1}", "m8x40-hex")
        await records.add(_record(seq))
    await records.mark(1, "acked")
    await records.close()

    reopened = Records(path)
    await reopened.open()
    assert await reopened.accept("c", "P4", "m8x40-hex") == 4  # sequence numbers never repeat across restarts
    assert [v.seq for v in await reopened.pending()] == [2, 3]
    await reopened.close()

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        row = db.execute("SELECT part_id, verdict, scores, ack_state FROM inspections WHERE seq = 1").fetchone()
    assert row == ("P1", "PASS", '{"head@0": 0.2}', "acked")


async def test_an_accepted_part_keeps_its_seq_and_is_found_unjudged_after_a_crash(tmp_path):
    path = tmp_path / "records.db"
    records = Records(path)
    await records.open()
    first = await records.accept("c", "A1", "m8x40-hex")
    await records.add(_record(first))
    killed = await records.accept("c", "A2", "m8x40-hex")
    # no close: the process 'dies' here; a second connection is the next daemon
    nxt = Records(path)
    await nxt.open()
    (unjudged,) = await nxt.unjudged()
    assert (unjudged.seq, unjudged.part_id) == (killed, "A2")
    assert await nxt.last_accepted() == "A2"
    assert await nxt.accept("c", "A3", "m8x40-hex") == killed + 1  # the killed part's seq is not reused
    await nxt.add(_record(killed, Outcome.RECHECK))
    assert [a.part_id for a in await nxt.unjudged()] == ["A3"]  # judging moves the part out
    await nxt.close()
    await records.close()


async def test_a_full_database_raises_records_error_and_takes_writes_again_when_space_returns(tmp_path):
    records = Records(tmp_path / "records.db")
    await records.open()
    (pages,) = (await records.query("PRAGMA page_count"))[0]
    await records.on_thread(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))
    with pytest.raises(RecordsError, match="full"):
        for i in range(200):  # rows fill the last pages, then a new page is refused
            seq = await records.accept("c", f"P{i}", "m8x40-hex")
            await records.add(_record(seq))
    await records.on_thread(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
    seq = await records.accept("c", "later", "m8x40-hex")
    await records.add(_record(seq, part_id="later"))
    assert await records.last_accepted() == "later"
    await records.close()


async def test_a_newer_schema_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "records.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    records = Records(path)
    with pytest.raises(RecordsError, match="newer"):
        await records.open()
    await records.close()


async def test_a_version_1_database_is_migrated_and_keeps_its_verdicts(tmp_path):
    path = tmp_path / "records.db"
    verdict = _record(41).verdict
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # the version-1 layout: `inspections` only
        db.executescript(SCHEMA)
        db.execute("DROP TABLE accepted")
        db.execute(
            "INSERT INTO inspections (seq, cell_id, part_id, profile, verdict, reason, scores, timings_ms,"
            " latency_ms, created_at, message) VALUES (41, 'c', 'P41', 'm8x40-hex', 'PASS', 'r', '{}', '{}',"
            " 1.0, '2026-01-01T00:00:00Z', ?)",
            (verdict.model_dump_json(),),
        )
        db.execute("PRAGMA user_version = 0")

    records = Records(path)
    await records.open()
    assert await records.accept("c", "next", "m8x40-hex") == 42  # continues after the old rows
    assert [v.seq for v in await records.pending()] == [41]
    assert (await records.query("PRAGMA user_version"))[0] == (2,)
    await records.close()
