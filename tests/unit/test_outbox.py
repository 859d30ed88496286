"""The outbox against real records on disk and a stand-in for the robot link.

The link is a seam inside the process (``send_verdict``, ``up``; acks come back through
``on_ack``): ``Link`` below records what was sent and when, by the loop's clock. Times are
milliseconds; no test races a wall-clock budget: they wait for events (with a generous guard
against hanging) and check orders, counts, lower bounds and logged back-off values.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cellctl import outbox as outbox_module
from cellctl.config import RobotLinkSettings
from cellctl.link.protocol import Ack, Verdict
from cellctl.outbox import Outbox
from cellctl.outcome import BIN_OF, Bin, Outcome
from cellctl.records import Record, Records
from cellctl.state import CellState, Phase

HANG_GUARD_S = 30.0  # only against a hang: every wait below ends on an event long before this


@dataclass
class Link:
    up: bool = True
    queued: bool = True  # what send_verdict answers
    sent: list[tuple[float, int]] = field(default_factory=list)  # (loop time, seq)

    def send_verdict(self, verdict: Verdict) -> bool:
        self.sent.append((asyncio.get_running_loop().time(), verdict.seq))
        return self.queued

    def seqs(self) -> list[int]:
        return [seq for _, seq in self.sent]

    def sends_of(self, seq: int) -> list[float]:
        return [t for t, s in self.sent if s == seq]


def _verdict(seq: int, boot_id: str = "boot1", outcome: Outcome = Outcome.PASS) -> Verdict:
    return Verdict(
        cell_id="c",
        boot_id=boot_id,
        seq=seq,
        request_id=f"req{seq}",
        part_id=f"P{seq}",
        profile="m8x40-hex",
        verdict=outcome,
        bin=BIN_OF[outcome],
        reason="all views clean",
        scores={"head@0": 0.1},
        max_score=0.1,
        latency_ms=1.0,
    )


def _ack(v: Verdict, **change: object) -> Ack:
    fields: dict[str, object] = {"cell_id": v.cell_id, "boot_id": v.boot_id, "seq": v.seq, "bin": v.bin, "res": 0}
    fields.update(change)
    return Ack(**fields)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not condition():
            await asyncio.sleep(0.001)


async def until_recorded(r: Rig, states: dict[int, str]) -> None:
    """Wait until the records say ``states`` (the outbox writes them on its own task)."""
    async with asyncio.timeout(HANG_GUARD_S):
        while await r.ack_states() != states:
            await asyncio.sleep(0.001)


def _settings(**change: object) -> RobotLinkSettings:
    values: dict[str, object] = {
        "security": "none",
        "ack_timeout_s": 60.0,  # no resends unless a test asks for them
        "ack_backoff_max_s": 60.0,
        "delivery_deadline_s": 600.0,
        "window": 3,
    }
    values.update(change)
    return RobotLinkSettings.model_validate(values)


@dataclass
class Rig:
    records: Records
    link: Link
    state: CellState
    outbox: Outbox

    async def record(self, *verdicts: Verdict) -> None:
        for v in verdicts:
            assert await self.records.accept("c", v.part_id, v.profile, v.request_id, v.boot_id) == v.seq
            await self.records.add(Record(v, {"head@0": 0.1}, {}))

    async def put(self, *verdicts: Verdict) -> None:
        await self.record(*verdicts)
        for v in verdicts:
            self.outbox.put(v)

    async def ack_states(self) -> dict[int, str]:
        return dict(await self.records.query("SELECT seq, ack_state FROM inspections"))


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, link: Link | None = None, replay: bool = False, **settings: object) -> AsyncIterator[Rig]:
    records = Records(tmp_path / "records.db")
    await records.open()
    state = CellState()
    state.set(Phase.READY)
    link = link or Link()
    outbox = Outbox(link, records, state, _settings(**settings), "c")
    if replay:
        await outbox.replay()
    task = asyncio.create_task(outbox.run(), name="outbox")
    try:
        yield Rig(records, link, state, outbox)
    finally:
        link.up = False  # nothing more can be acknowledged: the drain ends at once
        await outbox.drain()
        assert task.done()  # drain ends the task
        await task
        await records.close()


async def test_verdicts_go_out_in_seq_order_with_at_most_window_in_flight_and_the_cell_blocked_meanwhile(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, window=3) as r:
        verdicts = [_verdict(seq) for seq in range(1, 7)]
        await r.put(*verdicts)
        await until(lambda: len(r.link.sent) == 3)
        assert r.link.seqs() == [1, 2, 3]
        assert r.state.phase is Phase.BLOCKED and "outbox" in r.state.blocked_reasons
        assert "oldest seq 1" in r.state.blocked_reasons["outbox"]
        acked: set[int] = set()
        for v in verdicts:
            r.outbox.on_ack(_ack(v))
            acked.add(v.seq)
            await until(lambda: len(r.link.sent) == min(6, 3 + len(acked)))
            assert len(set(r.link.seqs()) - acked) <= 3  # the window holds
        assert r.link.seqs() == [1, 2, 3, 4, 5, 6]  # each once: acked in time, never resent
        await until(lambda: "outbox" not in r.state.blocked_reasons)
        assert r.state.name == "ready"
        await r.outbox.drain()
        assert await r.ack_states() == dict.fromkeys(range(1, 7), "acked")
        assert r.outbox.health() == {
            "in_flight": 0,
            "waiting": 0,
            "expired": 0,
            "acked": 6,
            "acked_late": 0,
            "refused": 0,
            "acks_rejected": {},
        }


async def test_nothing_is_sent_while_the_link_is_down_and_everything_goes_when_it_comes_up(tmp_path: Path) -> None:
    link = Link(up=False)
    async with rig(tmp_path, link) as r:
        await r.put(_verdict(1), _verdict(2))
        await asyncio.sleep(0.05)  # several passes of the task (it looks at least every second, woken by put)
        assert r.link.sent == []
        link.up = True
        r.outbox.on_link_up()
        await until(lambda: len(r.link.sent) == 2)
        assert r.link.seqs() == [1, 2]


async def test_an_unacknowledged_verdict_is_resent_with_a_doubling_back_off_up_to_the_maximum(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with rig(tmp_path, ack_timeout_s=0.01, ack_backoff_max_s=0.04) as r:
            await r.put(_verdict(1))
            await until(lambda: len(r.link.sent) >= 6)
            r.outbox.on_ack(_ack(_verdict(1)))
    sends = [e for e in logs if e["event"] in ("verdict.sent", "verdict.resent")][:6]
    assert [e["backoff_s"] for e in sends] == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]
    assert [e.get("sends") for e in sends] == [None, 2, 3, 4, 5, 6]
    assert all(e["seq"] == 1 and e["part_id"] == "P1" and e["profile"] == "m8x40-hex" for e in sends)
    times = r.link.sends_of(1)[:6]
    # never sooner than the back-off (a loaded machine only makes the gaps longer)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, backoff in zip(gaps, [0.01, 0.02, 0.04, 0.04, 0.04], strict=True):
        assert gap >= backoff - 1e-3


async def test_a_bridge_that_comes_back_gets_the_verdicts_in_flight_again_at_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:  # ack timeout 60 s: any second send is the reconnection's
        await r.put(_verdict(1), _verdict(2))
        await until(lambda: len(r.link.sent) == 2)
        r.outbox.on_link_up()
        await until(lambda: len(r.link.sent) == 4)
        assert r.link.seqs() == [1, 2, 1, 2]


async def test_an_expired_verdict_leaves_the_window_is_resent_at_reconnection_and_a_late_ack_is_recorded(
    tmp_path: Path,
) -> None:
    with capture_logs() as logs:
        async with rig(tmp_path, window=1, ack_timeout_s=0.005, ack_backoff_max_s=0.01, delivery_deadline_s=0.05) as r:
            await r.put(_verdict(1), _verdict(2))
            await until(lambda: r.outbox.health()["expired"] == 1)
            await until(lambda: 2 in r.link.seqs())  # the expired verdict no longer holds the window
            await until(lambda: r.outbox.health()["expired"] == 2)
            await until_recorded(r, {1: "expired", 2: "expired"})
            assert "outbox" not in r.state.blocked_reasons
            sent = len(r.link.sent)
            await asyncio.sleep(0.05)  # ten back-off periods: an expired verdict waits for the link
            assert len(r.link.sent) == sent
            r.outbox.on_link_up()
            await until(lambda: len(r.link.sent) > sent)
            assert r.link.seqs()[sent] == 1  # seq order again, from the lowest
            r.outbox.on_ack(_ack(_verdict(1)))
            await until_recorded(r, {1: "acked_late", 2: "expired"})
            assert r.outbox.health()["acked_late"] == 1
    expired = [e for e in logs if e["event"] == "verdict.expired"]
    assert {e["seq"] for e in expired} == {1, 2} and all(e["log_level"] == "error" for e in expired)


async def test_a_refusing_ack_is_an_alarm_recorded_with_its_result_and_never_resent(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with rig(tmp_path, ack_timeout_s=0.005, ack_backoff_max_s=0.005) as r:
            await r.put(_verdict(1, outcome=Outcome.REJECT), _verdict(2))
            await until(lambda: len(r.link.sent) == 2)
            r.outbox.on_ack(_ack(_verdict(1, outcome=Outcome.REJECT), res=4, detail="bin 2 full"))
            refused_at = len(r.link.sends_of(1))
            await until(lambda: len(r.link.sends_of(2)) >= 5)  # verdict 2's resends are the clock
            assert len(r.link.sends_of(1)) == refused_at
            await until_recorded(r, {1: "refused", 2: "pending"})
            rows = await r.records.query("SELECT ack_state, ack_res, ack_detail FROM inspections WHERE seq = 1")
            assert rows == [("refused", 4, "bin 2 full")]
            assert r.outbox.health()["refused"] == 1
            assert [v.seq for v in await r.records.undelivered()] == [2]
    (alarm,) = [e for e in logs if e["event"] == "verdict.refused_by_robot"]
    assert (alarm["log_level"], alarm["seq"], alarm["res"], alarm["part_id"]) == ("error", 1, 4, "P1")


async def test_acks_that_do_not_match_what_was_sent_are_counted_by_reason_and_change_nothing(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with rig(tmp_path, ack_timeout_s=0.005, ack_backoff_max_s=0.005) as r:
            v1, v2 = _verdict(1), _verdict(2, outcome=Outcome.REJECT)
            await r.put(v1, v2)
            await until(lambda: len(r.link.sent) == 2)
            r.outbox.on_ack(_ack(v1))
            r.outbox.on_ack(_ack(v1))  # duplicate
            r.outbox.on_ack(_ack(v2, seq=99))  # unknown_seq
            r.outbox.on_ack(_ack(_verdict(3)))  # never sent: unknown_seq too
            r.outbox.on_ack(_ack(v2, cell_id="other"))
            r.outbox.on_ack(_ack(v2, boot_id="boot0"))
            r.outbox.on_ack(_ack(v2, bin=Bin.GOOD))  # a REJECT acknowledged into the good bin
            assert r.outbox.health()["acks_rejected"] == {
                "duplicate": 1,
                "unknown_seq": 2,
                "wrong_cell": 1,
                "wrong_boot": 1,
                "wrong_bin": 1,
            }
            resent = len(r.link.sends_of(2))
            await until(lambda: len(r.link.sends_of(2)) >= resent + 2)  # still waiting for its real ack
            await until_recorded(r, {1: "acked", 2: "pending"})
            r.outbox.on_ack(_ack(v2))
            await until(lambda: r.outbox.health()["acked"] == 2)
    rejected = [e for e in logs if e["event"] == "robot_link.ack_rejected"]
    assert [e["reason"] for e in rejected] == [
        "duplicate",
        "unknown_seq",
        "unknown_seq",
        "wrong_cell",
        "wrong_boot",
        "wrong_bin",
    ]
    assert all(e["log_level"] == "warning" for e in rejected)


async def test_after_a_restart_the_undelivered_verdicts_are_replayed_in_seq_order_before_new_ones(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, link=Link(up=False)) as first:
        old = [_verdict(seq, boot_id="boot0") for seq in range(1, 6)]
        await first.record(*old)
        await first.records.mark(2, "acked")  # type: ignore[arg-type]
        await first.records.mark(4, "expired")  # type: ignore[arg-type]
    async with rig(tmp_path, replay=True, window=8) as second:
        await second.put(_verdict(6, boot_id="boot1"))
        await until(lambda: len(second.link.sent) == 5)
        assert second.link.seqs() == [1, 3, 4, 5, 6]
        second.outbox.on_ack(_ack(old[3]))  # seq 4 had expired in the earlier run: late
        second.outbox.on_ack(_ack(old[0]))
        second.outbox.on_ack(_ack(old[2], boot_id="boot1"))  # the boot it was judged in is boot0
        await until_recorded(
            second, {1: "acked", 2: "acked", 3: "pending", 4: "acked_late", 5: "pending", 6: "pending"}
        )
        assert (second.outbox.health()["acked"], second.outbox.health()["acked_late"]) == (1, 1)
        assert second.outbox.health()["acks_rejected"] == {"wrong_boot": 1}


async def test_records_that_refuse_an_ack_state_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "MARK_RETRY_S", 0.01)
    with capture_logs() as logs:
        async with rig(tmp_path) as r:
            v1 = _verdict(1)
            await r.put(v1)
            await until(lambda: len(r.link.sent) == 1)
            await r.records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
            r.outbox.on_ack(_ack(v1))
            await until(lambda: any(e["event"] == "verdict.mark_failed" for e in logs))
            assert await r.ack_states() == {1: "pending"}  # still undelivered in the records
            await r.records.on_thread(lambda db: db.execute("PRAGMA query_only = 0"))
            await until_recorded(r, {1: "acked"})  # tried again by itself
    (failed,) = [e for e in logs if e["event"] == "verdict.mark_failed"]
    assert (failed["log_level"], failed["seq"], failed["state"]) == ("warning", 1, "acked")


async def test_an_ack_state_the_records_never_took_is_resent_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "DRAIN_S", 0.2)  # the drain tries the records again until then
    async with rig(tmp_path) as r:
        v1 = _verdict(1)
        await r.put(v1)
        await until(lambda: len(r.link.sent) == 1)
        await r.records.on_thread(lambda db: db.execute("PRAGMA query_only = 1"))
        r.outbox.on_ack(_ack(v1))
        await until(lambda: r.outbox.health()["acked"] == 1)
    # the drain could not write it either; the next start replays it, the bridge deduplicates
    async with rig(tmp_path, replay=True) as nxt:
        await until(lambda: len(nxt.link.sent) == 1)
        assert nxt.link.seqs() == [1]


async def test_a_send_the_link_could_not_queue_is_tried_again_with_the_back_off(tmp_path: Path) -> None:
    async with rig(tmp_path, link=Link(queued=False), ack_timeout_s=0.005, ack_backoff_max_s=0.01) as r:
        await r.put(_verdict(1))
        await until(lambda: len(r.link.sent) >= 3)
        r.link.queued = True
        r.outbox.on_ack(_ack(_verdict(1)))
        await until(lambda: r.outbox.health()["acked"] == 1)


async def test_drain_ends_the_task_and_leaves_what_is_unacknowledged_in_the_records(tmp_path: Path) -> None:
    link = Link(up=False)
    async with rig(tmp_path, link) as r:
        await r.put(_verdict(1), _verdict(2))
        await r.outbox.drain()  # link down: nothing can be acknowledged, the drain ends at once
        assert r.outbox.health()["waiting"] == 2
        assert [v.seq for v in await r.records.undelivered()] == [1, 2]


@pytest.mark.parametrize("window", [1, 2])
async def test_the_block_follows_the_window(tmp_path: Path, window: int) -> None:
    async with rig(tmp_path, window=window) as r:
        verdicts = [_verdict(seq) for seq in range(1, window + 1)]
        await r.put(*verdicts[:-1])
        await until(lambda: len(r.link.sent) == window - 1)
        assert "outbox" not in r.state.blocked_reasons
        await r.put(verdicts[-1])
        await until(lambda: "outbox" in r.state.blocked_reasons)
        r.outbox.on_ack(_ack(verdicts[0]))
        assert "outbox" not in r.state.blocked_reasons  # at once, not at the task's next pass
