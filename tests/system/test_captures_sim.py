"""The learning loop end to end: the simulated cell on PLANT renders with captures on keeps
its store within budget, keeps only parts it has a reason for, and what it exported, once
sorted, `cellctl eval --parts` judges exactly as the daemon did (same outcome, same score
per view): the evaluation path is the daemon's; and `cellctl train` finds it as training items."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from cellctl.captures.capturer import MB
from cellctl.captures.store import RECORD, captures
from cellctl.cli import main as cli
from cellctl.sim.run import simulate
from cellctl.train.items import find_items
from tests.system.sim_args import sim_args

BUDGET_MB = 70  # about five parts of PNG frames: the run keeps more than that, so the budget bites


@pytest.mark.asyncio
async def test_captures_stay_in_budget_and_eval_judges_them_as_the_daemon_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    args = sim_args(
        tmp_path, 40, seed=31, defect_rate=0.3, conditions="plant", captures=store, captures_budget_mb=BUDGET_MB
    )
    s = await simulate(args, tmp_path)
    assert s["delivered"] == 40 and s["lost"] == 0
    assert 0 < s["captures"]["bytes"] <= BUDGET_MB * MB, s["captures"]
    kept = list(captures(store))
    assert len(kept) == s["captures"]["parts"] >= 2
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        rows = db.execute("SELECT seq, verdict, reason FROM inspections").fetchall()
    recorded = {seq: (verdict, reason) for seq, verdict, reason in rows}
    for folder in kept:
        record = json.loads((folder / RECORD).read_text())
        assert record["why"], record  # never kept without a reason
        assert recorded[record["seq"]] == (record["outcome"], record["reason"])
        if record["why"] == ["sample"]:
            continue
        near = [v["score"] for v in record["views"].values() if v["score"] is not None and abs(v["score"] - 0.5) <= 0.2]
        ood = [v for v in record["views"].values() if (v["problem"] or "").startswith("out of distribution")]
        assert record["outcome"] == "RECHECK" or near or ood, record

    out = tmp_path / "export"
    capsys.readouterr()  # the run's log lines
    assert cli(["captures", "export", str(out), "--store", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["parts/unlabelled"] == len(kept)
    # the quality engineer's sorting, done here by the cell's own call, so that eval must agree
    for folder in (out / "parts" / "unlabelled").iterdir():
        outcome = json.loads((folder / RECORD).read_text())["outcome"]
        dest = out / "parts" / ("defect" if outcome == "REJECT" else "good") / folder.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder, dest)
    # the trainer reads the sorted set too: one item per part, named by its capture
    items = find_items(out, "m8x40-hex", (0.0, 90.0, 180.0, 270.0))
    assert sorted(i.part_key.rsplit(":", 1)[1] for i in items) == sorted(p.name for p in kept)
    assert all(i.kind == "part" and len(i.files) == 5 for i in items)
    assert cli(["eval", "--profile", "m8x40-hex", "--parts", "--json", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["part"]["n"] == len(kept)
    for item in report["items"]:
        record = json.loads((out / item["name"] / RECORD).read_text())
        assert item["called"] == {"PASS": "good", "REJECT": "defect", "RECHECK": "recheck"}[record["outcome"]]
        assert item["reason"] == record["reason"]
        for view in item["views"]:
            daemon = record["views"][view["name"]]
            assert view["problem"] == daemon["problem"]
            if view["score"] is not None:
                assert view["score"] == pytest.approx(daemon["score"], abs=1e-5)
