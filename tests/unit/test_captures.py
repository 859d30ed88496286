"""The learning loop's capture store: what is kept and why, the byte budget, crash leftovers,
the export a quality engineer sorts, the command's exit codes, and the daemon's side never
holding a verdict up. Real files and real PNGs; the daemon end to end is in
tests/system/test_captures_sim.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cellctl.captures.capturer import MAX_PENDING, Capturer
from cellctl.captures.export import export_captures
from cellctl.captures.select import capture_reasons, sampled
from cellctl.captures.store import PARTIAL, RECORD, Capture, CaptureStore, captured_at, captures
from cellctl.cli import main as cli
from cellctl.config import CaptureSettings, resolve_profile
from cellctl.decision import Decision
from cellctl.inspection import OOD_PREFIX, Frame
from cellctl.link.protocol import Part
from cellctl.outcome import Outcome
from cellctl.pipeline.acquire import Acquisition
from cellctl.pipeline.analyse import PartResult
from cellctl.vision.images import read_image
from tests.conftest import PROFILES

SETTINGS = CaptureSettings(dir="unused", budget_mb=1, score_band=0.2, sample_fraction=0.0)
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def reasons(outcome: Outcome = Outcome.PASS, scores=None, problems=None, **settings) -> tuple[str, ...]:
    s = SETTINGS.model_copy(update=settings)
    return capture_reasons(outcome, scores or {"head@0": 0.01}, problems or {}, 0.5, s, "cell-01", 7)


def test_what_is_kept_and_why() -> None:
    assert reasons() == ()  # a clear PASS, no sample
    assert reasons(Outcome.REJECT, {"head@0": 0.99}) == ()  # a clear REJECT
    assert reasons(Outcome.RECHECK) == ("recheck",)
    ood = reasons(problems={"head@90#1": f"{OOD_PREFIX} (d=40.1 > 21.7)", "strip": "too dark"})
    assert ood == ("out of distribution: head@90#1",)  # another problem is not "out of distribution"
    near = reasons(scores={"head@0": 0.31, "shank[r0,c0]": 0.69, "shank[r1,c0]": 0.71, "head@90": 0.29})
    assert near == ("near threshold (0.5 +- 0.2): head@0, shank[r0,c0]",)
    assert reasons(scores={"head@0": 0.45}, score_band=0.0) == ()  # band 0: only a score exactly at it
    assert reasons(sample_fraction=1.0) == ("sample",)
    # a part kept for a reason is not also counted as a sample
    assert reasons(Outcome.RECHECK, sample_fraction=1.0) == ("recheck",)
    many = {f"head@{k}": 0.5 for k in range(5)}
    assert reasons(scores=many)[0].endswith("head@0, head@1, head@2 and 2 more")


def test_the_sample_is_the_fraction_asked_and_the_same_each_run() -> None:
    picked = [seq for seq in range(20_000) if sampled("cell-01", seq, 0.01)]
    assert 150 <= len(picked) <= 250  # 1 % of 20,000, from a hash: fixed, not a random draw per run
    assert picked == [seq for seq in range(20_000) if sampled("cell-01", seq, 0.01)]
    assert picked != [seq for seq in range(20_000) if sampled("cell-02", seq, 0.01)]  # per cell
    assert not any(sampled("cell-01", seq, 0.0) for seq in range(1000))
    assert all(sampled("cell-01", seq, 1.0) for seq in range(1000))


def capture(seq: int, at: datetime, side: int = 64, **record) -> Capture:
    rng = np.random.default_rng(seq)  # noise: PNG cannot shrink it, so sizes are predictable
    image = rng.integers(0, 256, (side, side), dtype=np.uint8)
    record = {"seq": seq, "outcome": "PASS", "why": ["sample"], "head_positions_deg": [0.0], **record}
    return Capture(seq, f"P{seq}", at, record, {"head0.png": (image, "Mono8"), "strip.png": (image, "Mono8")})


def test_the_store_keeps_whole_captures_within_its_budget_oldest_dropped_first(tmp_path: Path) -> None:
    one = CaptureStore(tmp_path / "probe", 10**9)
    one.open()
    size = one.health()["bytes"] + sum(f.stat().st_size for f in one.put(capture(0, T0)).iterdir())
    store = CaptureStore(tmp_path / "store", int(3.5 * size))  # room for 3
    store.open()
    for seq in range(1, 8):
        store.put(capture(seq, T0 + timedelta(seconds=seq)))
        assert store.health()["bytes"] <= store.budget_bytes
    kept = list(captures(store.root))
    assert [json.loads((p / RECORD).read_text())["seq"] for p in kept] == [5, 6, 7]
    assert store.health()["captures"] == 3 and store.health()["dropped_for_budget"] == 4
    assert sum(f.stat().st_size for p in kept for f in p.iterdir()) == store.health()["bytes"]
    # lossless: the pixels the daemon judged
    assert np.array_equal(read_image(kept[-1] / "head0.png"), capture(7, T0).images["head0.png"][0])
    # a capture larger than the whole budget is not kept: the budget is never exceeded
    tiny = CaptureStore(tmp_path / "tiny", size // 2)
    tiny.open()
    tiny.put(capture(9, T0))
    assert list(captures(tiny.root)) == [] and tiny.health()["bytes"] == 0


def test_a_crash_leaves_no_half_capture_and_a_restart_takes_stock(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "store", 10**9)
    store.open()
    store.put(capture(1, T0))
    store.put(capture(2, T0 + timedelta(seconds=1)))
    half = store.root / f"{PARTIAL}{capture(3, T0).name}"
    half.mkdir()
    (half / "head0.png").write_bytes(b"\x89PNG truncated")
    (store.root / "notes.txt").write_text("an operator's file is left alone")
    again = CaptureStore(store.root, 10**9)
    again.open()
    assert not half.exists() and (store.root / "notes.txt").exists()
    assert again.health()["captures"] == 2 and again.health()["bytes"] == store.health()["bytes"]
    assert [captured_at(p.name) for p in captures(store.root)] == [T0, T0 + timedelta(seconds=1)]


def test_a_capture_that_cannot_be_written_is_counted_and_leaves_nothing(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "store", 10**9)
    store.open()
    good = capture(1, T0).images["head0.png"]
    bad = Capture(1, "P1", T0, {"why": []}, {"head0.png": good, "strip.png": (np.zeros((4, 4, 2)), "Mono8")})
    with pytest.raises(OSError, match="cannot write capture"):  # an image the PNG encoder refuses
        store.put(bad)
    (store.root / f"{PARTIAL}{capture(2, T0).name}").write_text("in the way")  # the folder cannot be made
    with pytest.raises(OSError):
        store.put(capture(2, T0))
    assert store.health()["failed"] == 2 and store.health()["captures"] == 0
    assert [p.name for p in store.root.iterdir()] == [f"{PARTIAL}{capture(2, T0).name}"]


def test_export_writes_both_layouts_with_the_cells_view_beside_each_image(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "store", 10**9)
    store.open()
    views = {
        "head@0": {"score": 0.62, "ood": 3.1, "problem": None},
        "head@0#1": {"score": 0.2, "ood": 2.0, "problem": None},
        "shank[r0,c0]": {"score": 0.01, "ood": 50.0, "problem": f"{OOD_PREFIX} (d=50.0 > 21.7)"},
    }
    store.put(capture(1, T0, outcome="REJECT", reason="defect in head@0 (p=0.620)", views=views))
    store.put(capture(2, T0 + timedelta(hours=2)))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in store.root.rglob("*"))
    out = tmp_path / "out"
    counts = export_captures(store.root, out)
    assert counts == {"parts/unlabelled": 2, "head/unlabelled": 2, "shank/unlabelled": 2}
    first = capture(1, T0).name
    assert sorted(p.name for p in (out / "parts/unlabelled" / first).iterdir()) == [RECORD, "head0.png", "strip.png"]
    beside = json.loads((out / "head/unlabelled" / f"{first}_head0.json").read_text())
    assert beside["score"] == 0.62 and set(beside["views"]) == {"head@0", "head@0#1"}
    assert beside["outcome"] == "REJECT" and beside["reason"].startswith("defect in head@0")
    strip = json.loads((out / "shank/unlabelled" / f"{first}_strip.json").read_text())
    assert strip["views"]["shank[r0,c0]"]["problem"].startswith(OOD_PREFIX)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in store.root.rglob("*")) == before  # store untouched
    later = export_captures(store.root, tmp_path / "later", since=T0 + timedelta(hours=1))
    assert later["parts/unlabelled"] == 1
    assert export_captures(store.root, out) == counts  # again over the same folder: the same files


def test_a_capture_whose_record_is_not_the_stores_is_counted_named_and_skipped(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "store", 10**9)
    store.open()
    wrong = {
        "[]": "a JSON list, not an object",
        '{"views": []}': "views is not an object of views",
        '{"head_positions_deg": ["x"]}': "head_positions_deg is not a list of angles",
        '{"head_positions_deg": 5}': "head_positions_deg is not a list of angles",
        '{"head_positions_deg": [1e400]}': "head_positions_deg is not a list of angles",
        '{"views": {"head@0": 5}}': "views is not an object of views",
        '{"views": {"head@0": {"score": "high"}}}': "the score of view head@0 is not a finite number",
        "[" * 100_000 + "]" * 100_000: "nested too deeply to be a capture record",
        '{"why": ' + "[" * 100 + "]" * 100 + "}": "nested deeper than 16 levels, deeper than a capture record",
        "{not json": "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    }
    first = store.put(capture(0, T0))
    folders = {}
    for k, text in enumerate(wrong, start=1):
        folders[text] = store.put(capture(k, T0 + timedelta(seconds=k)))
        (folders[text] / RECORD).write_text(text)
    # a view whose distance is not finite (the store writes what the guard measured) is exported as null
    last = store.put(capture(99, T0 + timedelta(hours=1), views={"head@0": {"score": 0.4, "ood": float("inf")}}))
    notes: list[str] = []
    counts = export_captures(store.root, tmp_path / "out", note=notes.append)
    assert counts == {"parts/unlabelled": 2, "head/unlabelled": 2, "shank/unlabelled": 2, "unreadable": len(wrong)}
    assert notes == [f"note: {folders[t] / RECORD}: {why}; capture skipped" for t, why in wrong.items()]
    assert (tmp_path / "out" / "parts" / "unlabelled" / first.name).is_dir()
    beside = (tmp_path / "out" / "head" / "unlabelled" / f"{last.name}_head0.json").read_text()
    assert json.loads(beside, parse_constant=lambda c: pytest.fail(c))["views"]["head@0"] == {"score": 0.4, "ood": None}
    # the command: every capture it could export is exported, exit 0, each skipped one named on stderr
    run = subprocess.run(
        ["cellctl", "captures", "export", str(tmp_path / "o2"), "--store", str(store.root)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and json.loads(run.stdout)["unreadable"] == len(wrong), run
    assert run.stderr.splitlines() == notes


def test_the_captures_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = CaptureStore(tmp_path / "store", 10**9)
    store.open()
    store.put(capture(1, datetime.now(UTC)))
    assert cli(["captures", "export", str(tmp_path / "out"), "--store", str(store.root)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parts/unlabelled"] == 1
    assert cli(["captures", "export", str(tmp_path / "o2"), "--store", str(store.root), "--since", "1h"]) == 0
    capsys.readouterr()
    since = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert cli(["captures", "export", str(tmp_path / "o3"), "--store", str(store.root), "--since", since]) == 1
    assert "no capture since" in capsys.readouterr().err
    cell = tmp_path / "cell.yaml"
    cell.write_text("cell_id: c1\nrobot: {security: none}\n")
    assert cli(["captures", "export", str(tmp_path / "o4"), "--config", str(cell)]) == 2
    assert "storage.captures is not set" in capsys.readouterr().err
    cell.write_text("cell_id: c1\nrobot: {security: none}\nstorage:\n  captures: {dir: nothere}\n")
    assert cli(["captures", "export", str(tmp_path / "o5"), "--config", str(cell)]) == 2
    assert "no capture store yet" in capsys.readouterr().err
    cell.write_text("cell_id: c1\nstorage:\n  captures: {dir: store, budget_mb: 0}\n")
    assert cli(["captures", "export", str(tmp_path / "o6"), "--config", str(cell)]) == 2
    assert "budget_mb" in capsys.readouterr().err


def judged(seq: int, outcome: Outcome, scores: dict[str, float]) -> tuple[Acquisition, PartResult]:
    rp = resolve_profile(PROFILES / "m8x40-hex.yaml", verify_model=False)
    frame = Frame(np.zeros((32, 32), np.uint8), "Mono8")
    part = Part(request_id=f"r{seq}", part_id=f"P{seq}")
    acq = Acquisition(part, rp.name, rp, seq, 0.0, "boot", head_frames=[frame] * 4, strip=frame)
    decision = Decision(outcome, "why", max(scores.values()), None)
    result = PartResult(seq, part.part_id, rp.name, 0.0, decision, scores, {}, "sha", part.request_id, "psha")
    return acq, result


def test_the_daemon_side_drops_a_capture_rather_than_wait_for_a_slow_disk(tmp_path: Path) -> None:
    settings = CaptureSettings(dir=str(tmp_path), budget_mb=100, sample_fraction=0.0)
    capturer = Capturer(tmp_path / "store", settings, "cell-01")
    capturer.store.open()
    release, entered = threading.Event(), threading.Event()
    real_put = capturer.store.put

    def slow_put(c: Capture) -> Path:  # a disk that hangs until released
        entered.set()
        release.wait(30)
        return real_put(c)

    capturer.store.put = slow_put  # type: ignore[method-assign]
    try:
        assert capturer.offer(*judged(1, Outcome.PASS, {"head@0": 0.01})) is None  # nothing to learn from
        futures = [capturer.offer(*judged(seq, Outcome.RECHECK, {"head@0": 0.5})) for seq in range(2, 2 + MAX_PENDING)]
        assert all(f is not None for f in futures)
        assert entered.wait(30)
        assert capturer.offer(*judged(9, Outcome.RECHECK, {"head@0": 0.5})) is None  # returns at once, dropped
        assert capturer.health()["dropped_busy"] == 1
    finally:
        release.set()
    paths = [f.result(30) for f in futures if f is not None]
    asyncio.run(capturer.close())
    records = [json.loads((p / RECORD).read_text()) for p in paths]
    assert [r["seq"] for r in records] == list(range(2, 2 + MAX_PENDING)) and all(
        r["why"][0] == "recheck" for r in records
    )
    assert records[0]["views"] == {"head@0": {"score": 0.5, "ood": None, "problem": None}}
    assert sorted(f.name for f in paths[0].iterdir()) == [
        RECORD,
        "head0.png",
        "head180.png",
        "head270.png",
        "head90.png",
        "strip.png",
    ]
