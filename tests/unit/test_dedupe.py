"""The bridge's memory of verdicts acted on: bounded in memory, durable in SQLite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cellctl.bridge.dedupe import Completed, Dedupe, DedupeError, Key, SqliteDedupe


async def test_memory_dedupe_remembers_and_forgets_the_oldest_beyond_its_bound():
    dedupe = Dedupe(max_entries=3)
    await dedupe.open()
    for seq in range(1, 6):
        await dedupe.put(Key("c", "b", seq), Completed(res=0, detail=None, bin=2))
    assert await dedupe.count() == 3
    assert await dedupe.get(Key("c", "b", 1)) is None and await dedupe.get(Key("c", "b", 2)) is None
    assert await dedupe.get(Key("c", "b", 5)) == Completed(res=0, detail=None, bin=2)
    assert await dedupe.get(Key("c", "other-boot", 5)) is None  # the boot id is part of the key


async def test_sqlite_dedupe_survives_close_and_a_new_instance(tmp_path: Path):
    path = tmp_path / "dedupe.db"
    first = SqliteDedupe(path)
    await first.open()
    await first.put(Key("cell-a", "boot1", 42), Completed(res=3, detail="gripper empty", bin=1))
    await first.close()
    await first.open()  # restartable, as the bridge reopens it at every start
    assert await first.get(Key("cell-a", "boot1", 42)) == Completed(res=3, detail="gripper empty", bin=1)
    await first.close()
    second = SqliteDedupe(path)  # a restarted bridge process
    await second.open()
    try:
        assert await second.get(Key("cell-a", "boot1", 42)) == Completed(res=3, detail="gripper empty", bin=1)
        assert await second.get(Key("cell-a", "boot2", 42)) is None
    finally:
        await second.close()


async def test_sqlite_dedupe_works_off_the_event_loop(tmp_path: Path):
    dedupe = SqliteDedupe(tmp_path / "d.db")
    await dedupe.open()
    seen: list[str] = []
    original = dedupe._put

    def spy(*args: object) -> None:
        seen.append(threading.current_thread().name)
        original(*args)  # type: ignore[arg-type]

    dedupe._put = spy  # type: ignore[method-assign]
    try:
        await dedupe.put(Key("c", "b", 1), Completed(res=0, detail=None, bin=1))
    finally:
        await dedupe.close()
    assert seen and seen[0] != threading.main_thread().name and seen[0].startswith("dedupe-sqlite")


async def test_sqlite_dedupe_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("cellctl.bridge.dedupe.PRUNE_EVERY", 10)
    dedupe = SqliteDedupe(tmp_path / "d.db", max_entries=25)
    await dedupe.open()
    try:
        for seq in range(1, 101):
            await dedupe.put(Key("c", "b", seq), Completed(res=0, detail=None, bin=1))
        assert await dedupe.count() <= 25 + 10
        assert await dedupe.get(Key("c", "b", 1)) is None
        assert await dedupe.get(Key("c", "b", 100)) is not None
    finally:
        await dedupe.close()


async def test_an_unusable_dedupe_file_is_one_clear_error(tmp_path: Path):
    dedupe = SqliteDedupe(tmp_path / "no-such-folder" / "d.db")
    with pytest.raises(DedupeError, match="no-such-folder"):
        await dedupe.open()
    with pytest.raises(DedupeError, match="not open"):
        await dedupe.get(Key("c", "b", 1))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just some bytes" * 100)
    broken = SqliteDedupe(garbage)
    with pytest.raises(DedupeError, match=r"garbage\.db"):
        await broken.open()
