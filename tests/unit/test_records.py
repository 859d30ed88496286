from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from cellctl.link.protocol import Verdict
from cellctl.outcome import BIN_OF, Outcome
from cellctl.records import SCHEMA_VERSION, AckState, Record, Records, RecordsError


def _record(seq: int, outcome: Outcome = Outcome.PASS, part_id: str | None = None, boot_id: str = "boot1") -> Record:
    part_id = part_id or f"P{seq}"
    verdict = Verdict(
        cell_id="c",
        boot_id=boot_id,
        seq=seq,
        request_id=f"req-{part_id}",
        part_id=part_id,
        profile="m8x40-hex",
        profile_sha256="a" * 64,
        verdict=outcome,
        bin=BIN_OF[outcome],
        reason="r",
        scores={"head@0": 0.2},
        max_score=0.2,
        latency_ms=40.0,
    )
    return Record(verdict, {"head@0": 0.2, "strip": float("nan")}, {"infer": 3.0})


async def _judged(records: Records, part_id: str, outcome: Outcome = Outcome.PASS) -> int:
    seq = await records.accept("c", part_id, "m8x40-hex", f"req-{part_id}", "boot1")
    await records.add(_record(seq, outcome, part_id))
    return seq


async def test_records_survive_reopen_and_keep_unacknowledged_verdicts_in_seq_order(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    records = Records(path)
    await records.open()
    for i in range(4):
        await _judged(records, f"P{i + 1}", Outcome.REJECT if i == 1 else Outcome.PASS)
    assert await records.mark(1, AckState.ACKED)
    assert await records.mark(3, AckState.EXPIRED)
    await records.close()

    reopened = Records(path)
    await reopened.open()
    assert await reopened.accept("c", "P5", "m8x40-hex", "req5", "boot2") == 5  # seqs never repeat across restarts
    undelivered = await reopened.undelivered()
    assert [v.seq for v in undelivered] == [2, 3, 4]
    assert undelivered[0] == _record(2, Outcome.REJECT, "P2").verdict  # exactly what was recorded
    states = await reopened.undelivered_states()
    assert [(v.seq, s) for v, s in states] == [(2, AckState.PENDING), (3, AckState.EXPIRED), (4, AckState.PENDING)]
    await reopened.close()

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (4,)
        row = db.execute(
            "SELECT part_id, verdict, scores, ack_state, boot_id, request_id, profile_sha256, bin"
            " FROM inspections WHERE seq = 2"
        ).fetchone()
    assert row == ("P2", "REJECT", '{"head@0": 0.2, "strip": null}', "pending", "boot1", "req-P2", "a" * 64, 2)


async def test_an_accepted_part_keeps_its_seq_and_ids_and_is_found_unjudged_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    records = Records(path)
    await records.open()
    await _judged(records, "A1")
    killed = await records.accept("c", "A2", "m8x40-hex", "reqA2", "boot1")
    # no close: the process 'dies' here; a second connection is the next daemon
    nxt = Records(path)
    await nxt.open()
    (unjudged,) = await nxt.unjudged()
    assert (unjudged.seq, unjudged.part_id, unjudged.request_id, unjudged.boot_id) == (killed, "A2", "reqA2", "boot1")
    assert await nxt.last_accepted() == "A2"
    assert await nxt.accept("c", "A3", "m8x40-hex", "reqA3", "boot2") == killed + 1  # the killed seq is not reused
    await nxt.add(_record(killed, Outcome.RECHECK, "A2", boot_id="boot2"))
    assert [a.part_id for a in await nxt.unjudged()] == ["A3"]  # judging moves the part out
    await nxt.close()
    await records.close()


async def test_an_answered_verdict_keeps_its_state_and_the_robots_result(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.db")
    await records.open()
    for part in ("P1", "P2", "P3"):
        await _judged(records, part)
    assert await records.mark(1, AckState.REFUSED, res=7, detail="gripper empty")
    assert not await records.mark(1, AckState.PENDING)  # a refused verdict is never resent
    assert await records.mark(2, AckState.EXPIRED)
    assert await records.mark(2, AckState.ACKED_LATE, res=0)
    assert not await records.mark(2, AckState.EXPIRED)  # a late mark of an older state changes nothing
    with pytest.raises(RecordsError, match="no verdict with seq 9"):
        await records.mark(9, AckState.ACKED)  # its record may still wait in the writer's backlog
    rows = await records.query("SELECT seq, ack_state, ack_res, ack_detail, acked_at IS NOT NULL FROM inspections")
    assert rows == [(1, "refused", 7, "gripper empty", 1), (2, "acked_late", 0, None, 1), (3, "pending", None, None, 0)]
    assert [v.seq for v in await records.undelivered()] == [3]
    await records.close()


async def test_an_unreadable_verdict_is_kept_and_skipped_not_fatal(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.db")
    await records.open()
    for part in ("P1", "P2"):
        await _judged(records, part)
    await records.on_thread(lambda db: db.execute("UPDATE inspections SET message = '{\"v\": 2}' WHERE seq = 1"))
    assert [v.seq for v in await records.undelivered()] == [2]
    assert await records.query("SELECT COUNT(*) FROM inspections") == [(2,)]  # nothing deleted
    await records.close()


async def test_a_full_database_raises_records_error_and_takes_writes_again_when_space_returns(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.db")
    await records.open()
    (pages,) = (await records.query("PRAGMA page_count"))[0]
    await records.on_thread(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))
    with pytest.raises(RecordsError, match="full"):
        for i in range(200):  # rows fill the last pages, then a new page is refused
            await _judged(records, f"P{i}")
    await records.on_thread(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
    await _judged(records, "later")
    assert await records.last_accepted() == "later"
    await records.close()


async def test_a_newer_schema_is_refused_naming_both_versions_and_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    records = Records(path)
    with pytest.raises(RecordsError, match=r"schema version 99 is newer than this cellctl's version 4"):
        await records.open()
    await records.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (99,)
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


async def test_the_message_column_is_the_v2_verdict_as_sent(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.db")
    await records.open()
    await _judged(records, "P1")
    ((message,),) = await records.query("SELECT message FROM inspections")
    sent = json.loads(message)
    assert (sent["v"], sent["type"], sent["boot_id"], sent["request_id"]) == (2, "verdict", "boot1", "req-P1")
    await records.close()
