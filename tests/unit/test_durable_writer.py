"""Records that stop taking writes block the cell, keep what they could not write, and
unblock by themselves: SQLite's own full/read-only errors, and a real full file system."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess

import pytest

from cellctl.messages import Bin, Outcome, Verdict
from cellctl.pipeline import DurableWriter
from cellctl.records import Record, Records
from cellctl.state import CellState, Phase


def _record(seq: int, part_id: str) -> Record:
    verdict = Verdict(
        cell_id="c",
        seq=seq,
        part_id=part_id,
        profile="m8x40-hex",
        verdict=Outcome.PASS,
        bin=Bin.GOOD,
        reason="all views clean",
        max_score=0.1,
        latency_ms=1.0,
    )
    return Record(verdict, {"head@0": 0.1}, {})


async def _writer(path) -> tuple[Records, DurableWriter, CellState]:
    records = Records(path)
    await records.open()
    state = CellState()
    state.set(Phase.READY)
    return records, DurableWriter(records, state), state


async def test_a_verdict_the_records_refuse_waits_in_the_backlog_and_the_cell_blocks_until_writes_work(tmp_path):
    records, writer, state = await _writer(tmp_path / "records.db")
    seq = await writer.accept("c", "P1", "m8x40-hex", asyncio.Event())
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    assert not await writer.add(_record(seq, "P1"))
    assert state.phase is Phase.BLOCKED and "records" in state.blocked_reasons
    assert "readonly" in state.blocked_reasons["records"]
    await writer.flush()  # still read-only: nothing changes
    assert len(writer.backlog) == 1 and state.phase is Phase.BLOCKED
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 0"))
    await writer.flush()
    assert writer.backlog == [] and state.phase is Phase.READY
    assert await records.query("SELECT seq, part_id FROM inspections") == [(seq, "P1")]
    assert await records.unjudged() == []
    await records.close()


async def test_a_part_the_records_cannot_accept_waits_until_they_can(tmp_path):
    records, writer, state = await _writer(tmp_path / "records.db")
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    accepting = asyncio.create_task(writer.accept("c", "P1", "m8x40-hex", asyncio.Event()))
    while not state.blocked_reasons:  # event-driven: the first refusal blocks the cell
        await asyncio.sleep(0.01)
    assert not accepting.done()
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 0"))
    assert await asyncio.wait_for(accepting, 30) == 1
    assert state.phase is Phase.READY
    await records.close()


async def test_a_stop_ends_the_wait_of_a_part_the_records_cannot_accept(tmp_path):
    records, writer, _ = await _writer(tmp_path / "records.db")
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    stop = asyncio.Event()
    stop.set()
    assert await writer.accept("c", "P1", "m8x40-hex", stop) is None
    await records.close()


@contextlib.contextmanager
def _small_filesystem(path):
    """A 1 MiB tmpfs: the real ENOSPC of a full disk (needs root, as CI runs)."""
    path.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); this test needs root, as CI runs it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_really_full_file_system_blocks_the_cell_and_freeing_space_unblocks_it(tmp_path):
    with _small_filesystem(tmp_path / "disk") as disk:
        records, writer, state = await _writer(disk / "records.db")
        seq = await writer.accept("c", "P1", "m8x40-hex", asyncio.Event())
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:  # ENOSPC ends the fill
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
        assert not await writer.add(_record(seq, "P1"))
        assert "full" in state.blocked_reasons["records"]
        filler.unlink()
        await writer.flush()
        assert state.phase is Phase.READY and writer.backlog == []
        assert await records.query("SELECT part_id FROM inspections") == [("P1",)]
        await records.close()
