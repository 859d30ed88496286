from __future__ import annotations

import contextlib
import sqlite3

from cellctl.messages import Bin, Outcome, Verdict
from cellctl.records import Record, Records


def _record(seq: int, outcome: Outcome = Outcome.PASS) -> Record:
    verdict = Verdict(cell_id="c", seq=seq, part_id=f"P{seq}", profile="m8x40-hex", verdict=outcome,
                      bin=Bin.GOOD if outcome is Outcome.PASS else Bin.RECHECK, reason="r", max_score=0.2,
                      latency_ms=40.0)
    return Record(verdict, {"head@0": 0.2}, {"infer": 3.0})


async def test_records_survive_reopen_and_keep_unacknowledged_verdicts(tmp_path):
    path = tmp_path / "records.db"
    records = Records(path)
    await records.open()
    for _ in range(3):
        await records.add(_record(records.take_seq()))
    await records.mark(1, "acked")
    await records.close()

    reopened = Records(path)
    await reopened.open()
    assert reopened.next_seq == 4  # sequence numbers never repeat across restarts
    assert [v.seq for v in await reopened.pending()] == [2, 3]
    await reopened.close()

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        row = db.execute("SELECT part_id, verdict, scores, ack_state FROM inspections WHERE seq = 1").fetchone()
    assert row == ("P1", "PASS", '{"head@0": 0.2}', "acked")
