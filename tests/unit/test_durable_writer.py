"""Records that stop taking writes block the cell, keep what they could not write, and
unblock by themselves: SQLite's own full/read-only errors, and a real full file system. And
what the publisher records and hands to the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellctl.config import RobotLinkSettings
from cellctl.decision import Decision
from cellctl.fault import Fault, Step
from cellctl.link.protocol import Verdict
from cellctl.outbox import Outbox
from cellctl.outcome import Bin, Outcome
from cellctl.pipeline import DurableWriter, PartResult, Publisher
from cellctl.records import Record, Records
from cellctl.state import CellState, Phase
from cellctl.text import unsafe_character


def _record(seq: int, part_id: str) -> Record:
    verdict = Verdict(
        cell_id="c",
        boot_id="boot1",
        seq=seq,
        request_id=f"req-{part_id}",
        part_id=part_id,
        profile="m8x40-hex",
        verdict=Outcome.PASS,
        bin=Bin.GOOD,
        reason="all views clean",
        max_score=0.1,
        latency_ms=1.0,
    )
    return Record(verdict, {"head@0": 0.1}, {})


async def _writer(path: Path) -> tuple[Records, DurableWriter, CellState]:
    records = Records(path)
    await records.open()
    state = CellState()
    state.set(Phase.READY)
    return records, DurableWriter(records, state), state


async def test_a_verdict_the_records_refuse_waits_in_the_backlog_and_the_cell_blocks_until_writes_work(
    tmp_path: Path,
) -> None:
    records, writer, state = await _writer(tmp_path / "records.db")
    seq = await writer.accept("c", "P1", "m8x40-hex", "req-P1", "boot1", asyncio.Event())
    assert seq is not None
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    assert not await writer.add(_record(seq, "P1"))
    assert state.phase is Phase.BLOCKED and "records" in state.blocked_reasons
    assert "readonly" in state.blocked_reasons["records"]
    await writer.flush()  # still read-only: nothing changes
    assert len(writer.backlog) == 1 and state.name == "blocked"
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 0"))
    await writer.flush()
    assert writer.backlog == [] and state.name == "ready"
    assert await records.query("SELECT seq, part_id FROM inspections") == [(seq, "P1")]
    assert await records.unjudged() == []
    await records.close()


async def test_a_part_the_records_cannot_accept_waits_until_they_can(tmp_path: Path) -> None:
    records, writer, state = await _writer(tmp_path / "records.db")
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    accepting = asyncio.create_task(writer.accept("c", "P1", "m8x40-hex", "req-P1", "boot1", asyncio.Event()))
    while not state.blocked_reasons:  # event-driven: the first refusal blocks the cell
        await asyncio.sleep(0.01)
    assert not accepting.done()
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 0"))
    assert await asyncio.wait_for(accepting, 30) == 1
    assert state.phase is Phase.READY
    await records.close()


async def test_a_stop_ends_the_wait_of_a_part_the_records_cannot_accept(tmp_path: Path) -> None:
    records, writer, _ = await _writer(tmp_path / "records.db")
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    stop = asyncio.Event()
    stop.set()
    assert await writer.accept("c", "P1", "m8x40-hex", "req-P1", "boot1", stop) is None
    await records.close()


@contextlib.contextmanager
def _small_filesystem(path: Path) -> Iterator[Path]:
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


async def test_a_really_full_file_system_blocks_the_cell_and_freeing_space_unblocks_it(tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "disk") as disk:
        records, writer, state = await _writer(disk / "records.db")
        seq = await writer.accept("c", "P1", "m8x40-hex", "req-P1", "boot1", asyncio.Event())
        assert seq is not None
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


async def test_a_published_verdict_is_recorded_then_queued_carrying_the_ids_that_bind_it(tmp_path: Path) -> None:
    records, writer, state = await _writer(tmp_path / "records.db")
    outbox = Outbox(_DownLink(), records, state, RobotLinkSettings(security="none"), "c")
    publisher = Publisher("c", "boot7", writer, outbox)
    seq = await writer.accept("c", "P1", "m8x40-hex", "req-P1", "boot7", asyncio.Event())
    assert seq is not None
    fault = Fault(Step.FRAME, "camera said \x1b[31mtimeout\u202e " + "x" * 300)
    result = PartResult(
        seq,
        "P1",
        "m8x40-hex",
        time.monotonic(),
        Decision(Outcome.RECHECK, fault.reason, 0.2, "head@0"),
        {"head@0": 0.2, "head@90": float("nan")},
        {},
        "b" * 64,
        "req-P1",
        "c" * 64,
    )
    sent = await publisher.publish(result)
    assert (sent.boot_id, sent.request_id, sent.profile_sha256, sent.bin) == ("boot7", "req-P1", "c" * 64, Bin.RECHECK)
    assert sent.scores == {"head@0": 0.2, "head@90": None}
    assert len(sent.reason) == 200 and unsafe_character(sent.reason) is None and "timeout" in sent.reason
    assert await records.undelivered() == [sent]  # recorded first ...
    assert outbox.health()["waiting"] == 1  # ... then handed to the outbox
    await records.close()


async def test_a_verdict_the_records_refuse_is_queued_as_recheck(tmp_path: Path) -> None:
    records, writer, state = await _writer(tmp_path / "records.db")
    outbox = Outbox(_DownLink(), records, state, RobotLinkSettings(security="none"), "c")
    publisher = Publisher("c", "boot7", writer, outbox)
    seq = await writer.accept("c", "P1", "m8x40-hex", "req-P1", "boot7", asyncio.Event())
    assert seq is not None
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
    clean = Decision(Outcome.PASS, "all views clean", 0.1, "head@0")
    result = PartResult(seq, "P1", "m8x40-hex", time.monotonic(), clean, {"head@0": 0.1}, {}, None, "req-P1", None)
    sent = await publisher.publish(result)
    assert (sent.verdict, sent.bin) == (Outcome.RECHECK, Bin.RECHECK) and sent.reason.startswith("record")
    assert writer.backlog[0].verdict == sent and outbox.health()["waiting"] == 1
    await records.on_thread(lambda db: db.execute("PRAGMA query_only = 0"))
    await writer.flush()
    assert await records.undelivered() == [sent]
    await records.close()


class _DownLink:
    """The outbox's task is not run here: only what publish hands it is looked at."""

    up = False

    def send_verdict(self, verdict: Verdict) -> bool:
        raise AssertionError("nothing is sent in these tests")
