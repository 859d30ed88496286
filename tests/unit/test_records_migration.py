"""Records files written by earlier cellctl versions open without losing a row, and what they
never had acknowledged can still be resent as v2 verdicts."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from pathlib import Path

import pytest

from cellctl.link.protocol import Verdict
from cellctl.outcome import Bin, Outcome
from cellctl.records import MIGRATED_BOOT_ID, SCHEMA_VERSION, AckState, Record, Records, RecordsError

# The schema of cellctl at 9e0c01d..aab9b80 (records.py SCHEMA, user_version 2), frozen: never
# import it from the code under test, which no longer has it.
SCHEMA_V2 = """
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

# The first schema (user_version never set, so 0): `inspections` only, frozen likewise.
SCHEMA_V1 = SCHEMA_V2[: SCHEMA_V2.index("CREATE TABLE IF NOT EXISTS accepted")]

# The schema of cellctl at e848699 (user_version 3, robot link v2) as its migrations left it, frozen.
SCHEMA_V3 = """
CREATE TABLE inspections (
    seq INTEGER PRIMARY KEY, cell_id TEXT NOT NULL, part_id TEXT NOT NULL, profile TEXT NOT NULL,
    model_sha256 TEXT, verdict TEXT NOT NULL, reason TEXT NOT NULL, scores TEXT NOT NULL,
    timings_ms TEXT NOT NULL, latency_ms REAL NOT NULL, created_at TEXT NOT NULL, message TEXT NOT NULL,
    ack_state TEXT NOT NULL DEFAULT 'pending', acked_at TEXT,
    boot_id TEXT, request_id TEXT, profile_sha256 TEXT, bin INTEGER, ack_res INTEGER, ack_detail TEXT
);
CREATE INDEX inspections_undelivered ON inspections (seq) WHERE ack_state IN ('pending', 'expired');
CREATE TABLE accepted (
    seq INTEGER PRIMARY KEY, cell_id TEXT NOT NULL, part_id TEXT NOT NULL, profile TEXT NOT NULL,
    accepted_at TEXT NOT NULL, request_id TEXT, boot_id TEXT
);
"""

SHA = "0123456789abcdef" * 4
# seq, part_id, outcome, bin, ack_state, scores column as today's code wrote it (json.dumps: NaN stays NaN)
ROWS = [
    (1, "A1", "PASS", 1, "acked", {"head@0": 0.1, "strip": 0.05}),
    (2, "A2", "REJECT", 2, "pending", {"head@0": 0.93, "strip": float("nan")}),
    (3, "A3", "RECHECK", 3, "expired", {}),
    (4, "A4", "PASS", 1, "pending", {"head@0": 0.2}),
]


def _v1_message(seq: int, part_id: str, outcome: str, bin_: int) -> str:
    """A verdict as the v1 link sent it (cellctl.messages.Verdict.model_dump_json)."""
    return json.dumps(
        {
            "schema_version": 1,
            "type": "verdict",
            "cell_id": "cell-01",
            "seq": seq,
            "part_id": part_id,
            "profile": "m8x40-hex",
            "verdict": outcome,
            "bin": bin_,
            "reason": "defect in head@0 (p=0.930)" if outcome == "REJECT" else "all views clean",
            "max_score": 0.93 if outcome == "REJECT" else None,
            "worst_view": "head@0" if outcome == "REJECT" else None,
            "model_sha256": SHA,
            "latency_ms": 412.5,
        },
        separators=(",", ":"),
    )


def _write_old_file(path: Path, schema: str, version: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(schema)
        for seq, part_id, outcome, bin_, state, scores in ROWS:
            message = _v1_message(seq, part_id, outcome, bin_)
            db.execute(
                "INSERT INTO inspections (seq, cell_id, part_id, profile, model_sha256, verdict, reason, scores,"
                " timings_ms, latency_ms, created_at, message, ack_state, acked_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    "cell-01",
                    part_id,
                    "m8x40-hex",
                    SHA,
                    outcome,
                    json.loads(message)["reason"],
                    json.dumps(scores),
                    '{"infer": 3.0}',
                    412.5,
                    "2026-01-01T00:00:00.000+00:00",
                    message,
                    state,
                    "2026-01-01T00:00:01.000+00:00" if state == "acked" else None,
                ),
            )
        if version >= 2:
            db.execute(
                "INSERT INTO accepted (seq, cell_id, part_id, profile, accepted_at)"
                " VALUES (5, 'cell-01', 'A5', 'm8x40-hex', '2026-01-01T00:00:02.000+00:00')"
            )
        db.execute(f"PRAGMA user_version = {version}")


def _dump(path: Path) -> tuple[int, list[tuple[object, ...]], list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        inspections = db.execute("SELECT * FROM inspections ORDER BY seq").fetchall()
        accepted = db.execute("SELECT * FROM accepted ORDER BY seq").fetchall()
    return version, inspections, accepted


async def _check_migrated(path: Path, unjudged_seqs: list[int]) -> None:
    records = Records(path)
    await records.open()
    assert await records.query("SELECT seq, part_id, verdict, ack_state, bin FROM inspections ORDER BY seq") == [
        (seq, part_id, outcome, state, bin_) for seq, part_id, outcome, bin_, state, _ in ROWS
    ]
    # an acknowledged verdict keeps its message exactly as it was sent
    assert await records.query("SELECT message FROM inspections WHERE seq = 1") == [(_v1_message(1, "A1", "PASS", 1),)]
    states = await records.undelivered_states()
    assert [(v.seq, s) for v, s in states] == [(2, AckState.PENDING), (3, AckState.EXPIRED), (4, AckState.PENDING)]
    reject = states[0][0]
    assert reject == Verdict(
        cell_id="cell-01",
        boot_id=MIGRATED_BOOT_ID,
        seq=2,
        request_id=None,
        part_id="A2",
        profile="m8x40-hex",
        model_sha256=SHA,
        verdict=Outcome.REJECT,
        bin=Bin.REJECT,
        reason="defect in head@0 (p=0.930)",
        scores={"head@0": 0.93, "strip": None},  # from the scores column; NaN is not a score
        max_score=0.93,
        worst_view="head@0",
        latency_ms=412.5,
    )
    assert (states[1][0].bin, states[1][0].scores, states[1][0].worst_view) == (Bin.RECHECK, {}, None)
    assert await records.query("SELECT DISTINCT boot_id FROM inspections WHERE ack_state != 'acked'") == [
        (MIGRATED_BOOT_ID,)
    ]
    assert [(a.seq, a.request_id, a.boot_id) for a in await records.unjudged()] == [
        (s, None, None) for s in unjudged_seqs
    ]
    # parts judged before schema 4 have no evidence: an empty object, not a guess
    assert [await records.evidence(seq) for seq, *_ in ROWS] == [{}] * len(ROWS)
    assert await records.accept("cell-01", "A6", "m8x40-hex", "req6", "boot1") == (6 if unjudged_seqs else 5)
    await records.close()


async def test_a_database_written_by_todays_schema_migrates_without_losing_a_row(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_old_file(path, SCHEMA_V2, version=2)
    await _check_migrated(path, unjudged_seqs=[5])
    assert _dump(path)[0] == SCHEMA_VERSION == 4


async def test_a_version_1_database_migrates_without_losing_a_row(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_old_file(path, SCHEMA_V1, version=0)  # version 1 never set user_version
    await _check_migrated(path, unjudged_seqs=[])
    assert _dump(path)[0] == SCHEMA_VERSION


async def test_reopening_a_migrated_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_old_file(path, SCHEMA_V2, version=2)
    records = Records(path)
    await records.open()
    await records.close()
    migrated = _dump(path)
    for _ in range(2):
        records = Records(path)
        await records.open()
        await records.close()
        assert _dump(path) == migrated


async def test_a_migrated_verdict_round_trips_through_the_v2_decoder(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_old_file(path, SCHEMA_V1, version=0)
    records = Records(path)
    await records.open()
    for verdict in await records.undelivered():
        wire = verdict.model_dump_json()
        again = Verdict.model_validate_json(wire)
        assert again == verdict and all(p is None or math.isfinite(p) for p in again.scores.values())
    await records.close()


async def test_an_old_verdict_with_names_the_v2_protocol_refuses_is_escaped_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_old_file(path, SCHEMA_V2, version=2)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE inspections SET part_id = 'A4\x1b[2J', reason = ? WHERE seq = 4", ("x" * 500,))
    records = Records(path)
    await records.open()
    fourth = (await records.undelivered())[-1]
    assert (fourth.seq, fourth.part_id, len(fourth.reason)) == (4, "A4\\x1b[2J", 200)
    await records.close()


async def test_a_step_that_fails_leaves_the_file_at_the_last_complete_version(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_old_file(path, SCHEMA_V2, version=2)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        # a column step 3 adds, already there: step 3 fails half-way through
        db.execute("ALTER TABLE accepted ADD COLUMN boot_id TEXT")
    before = _dump(path)
    records = Records(path)
    with pytest.raises(RecordsError, match="duplicate column"):
        await records.open()
    await records.close()
    assert _dump(path) == before  # version 2, no column of step 3 added, no message rewritten


def _v3_verdict(seq: int, part_id: str, outcome: Outcome) -> Verdict:
    return Verdict(
        cell_id="cell-01",
        boot_id="boot3",
        seq=seq,
        request_id=f"req-{part_id}",
        part_id=part_id,
        profile="m8x40-hex",
        profile_sha256="c" * 64,
        model_sha256=SHA,
        verdict=outcome,
        bin=Bin.GOOD if outcome is Outcome.PASS else Bin.REJECT,
        reason="all views clean" if outcome is Outcome.PASS else "defect in head@0 (p=0.930)",
        scores={"head@0": 0.93 if outcome is Outcome.REJECT else 0.1, "strip": None},
        max_score=0.93 if outcome is Outcome.REJECT else 0.1,
        worst_view="head@0",
        latency_ms=300.0,
    )


def _write_v3_file(path: Path) -> list[Verdict]:
    """Two judged parts (one acknowledged, one not) and one accepted, as schema 3 wrote them."""
    verdicts = [_v3_verdict(1, "B1", Outcome.PASS), _v3_verdict(2, "B2", Outcome.REJECT)]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(SCHEMA_V3)
        for v, state in zip(verdicts, ("acked", "pending"), strict=True):
            db.execute(
                "INSERT INTO inspections (seq, cell_id, part_id, profile, model_sha256, verdict, reason, scores,"
                " timings_ms, latency_ms, created_at, message, ack_state, acked_at, boot_id, request_id,"
                " profile_sha256, bin, ack_res) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    v.seq,
                    v.cell_id,
                    v.part_id,
                    v.profile,
                    v.model_sha256,
                    v.verdict.value,
                    v.reason,
                    json.dumps(v.scores),
                    '{"infer": 3.0}',
                    v.latency_ms,
                    "2026-06-01T00:00:00.000+00:00",
                    v.model_dump_json(),
                    state,
                    "2026-06-01T00:00:01.000+00:00" if state == "acked" else None,
                    v.boot_id,
                    v.request_id,
                    v.profile_sha256,
                    int(v.bin),
                    0 if state == "acked" else None,
                ),
            )
        db.execute(
            "INSERT INTO accepted (seq, cell_id, part_id, profile, accepted_at, request_id, boot_id)"
            " VALUES (3, 'cell-01', 'B3', 'm8x40-hex', '2026-06-01T00:00:02.000+00:00', 'req-B3', 'boot3')"
        )
        db.execute("PRAGMA user_version = 3")
    return verdicts


async def test_a_version_3_database_gains_empty_evidence_and_keeps_every_row_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    verdicts = _write_v3_file(path)
    _, before, accepted_before = _dump(path)
    records = Records(path)
    await records.open()
    await records.close()
    version, after, accepted_after = _dump(path)
    assert version == SCHEMA_VERSION == 4
    assert [row[:-1] for row in after] == before  # every column of schema 3 untouched, messages included
    assert [row[-1] for row in after] == ["{}", "{}"]  # the new column, last
    assert accepted_after == accepted_before

    records = Records(path)
    await records.open()
    assert await records.undelivered() == [verdicts[1]]  # still resent exactly as it was sent
    assert (await records.evidence(1), await records.evidence(2), await records.evidence(3)) == ({}, {}, None)
    (unjudged,) = await records.unjudged()
    assert (unjudged.seq, unjudged.part_id, unjudged.request_id) == (3, "B3", "req-B3")
    # the part in the fixture is judged after the upgrade: its evidence is kept
    judged = _v3_verdict(3, "B3", Outcome.PASS).model_copy(update={"boot_id": "boot4"})
    await records.add(Record(judged, {"head@0": 0.1}, {}, {"coverage": {"head": 1.0, "shank": 0.99}}))
    assert await records.evidence(3) == {"coverage": {"head": 1.0, "shank": 0.99}}
    assert await records.unjudged() == []
    await records.close()


async def test_a_failed_step_4_leaves_a_version_3_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _write_v3_file(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("ALTER TABLE inspections ADD COLUMN evidence TEXT")  # step 4 fails half-way through
    before = _dump(path)
    records = Records(path)
    with pytest.raises(RecordsError, match="duplicate column"):
        await records.open()
    await records.close()
    assert _dump(path) == before and before[0] == 3
