"""`cellctl verdict` on the records of a real simulated run: an auditor sees why each part was
judged as it was, and old or foreign files get one clear line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cellctl.cli import main as cli
from cellctl.records._migrations import _v1_inspections


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verdict") / "records.db"
    assert cli(["sim", "--parts", "3", "--seed", "5", "--records", str(path), "--json"]) == 0
    return path


def test_a_verdict_is_shown_whole_with_its_evidence(records, capsys):
    capsys.readouterr()
    assert cli(["verdict", "--records", str(records), "--seq", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    db = sqlite3.connect(records)
    part_id, verdict, scores = db.execute("SELECT part_id, verdict, scores FROM inspections WHERE seq = 2").fetchone()
    assert (row["seq"], row["part_id"], row["verdict"]) == (2, part_id, verdict)
    assert row["scores"] == json.loads(scores) and len(row["scores"]) >= 5
    assert set(row["evidence"]["ood"]) == set(row["scores"]) and row["evidence"]["coverage"]["head"] > 0.9
    assert row["ack_state"] == "acked" and len(row["model_sha256"]) == 64 and len(row["profile_sha256"]) == 64

    assert cli(["verdict", "--records", str(records), "--seq", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"seq 2  part {part_id}  profile m8x40-hex  {verdict}")
    assert "coverage    head" in text and f"views       {len(row['scores'])}:" in text
    # every view's focus and sensor noise, as the records keep them (a real sensor's noise: above the floor)
    views = ("head@0", "head@90", "head@180", "head@270", "strip")
    assert set(row["evidence"]["sharpness"]) == set(row["evidence"]["noise"]) == set(views)
    assert all(row["evidence"]["noise"][v] >= 0.8 for v in views) and row["evidence"]["repeated"] == []
    assert "  focus       head@0 " in text and "  noise       head@0 " in text
    for name in row["scores"]:
        assert f"    {name}" in text


def test_by_part_and_the_latest(records, capsys):
    capsys.readouterr()
    part_id = sqlite3.connect(records).execute("SELECT part_id FROM inspections WHERE seq = 1").fetchone()[0]
    assert cli(["verdict", "--records", str(records), "--part", part_id, "--json"]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [1]
    assert cli(["verdict", "--records", str(records), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 3


def test_what_is_not_recorded_is_exit_1_with_one_line(records, capsys):
    capsys.readouterr()
    assert cli(["verdict", "--records", str(records), "--seq", "99"]) == 1
    assert cli(["verdict", "--records", str(records), "--part", "NOPE"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {records}: no verdict recorded for seq 99",
        f"error: {records}: no verdict recorded for part 'NOPE'",
    ]


def test_records_of_schema_1_show_what_they_hold(tmp_path, capsys):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    _v1_inspections(db)
    db.execute(
        "INSERT INTO inspections (seq, cell_id, part_id, profile, verdict, reason, scores, timings_ms, latency_ms,"
        " created_at, message) VALUES (7, 'c', 'P7', 'm8x40-hex', 'PASS', 'all 9 views clean', '{\"head@0\": 0.01}',"
        " '{}', 3.0, 'then', '{}')"
    )
    db.commit()
    db.close()
    capsys.readouterr()
    assert cli(["verdict", "--records", str(path), "--seq", "7"]) == 0
    text = capsys.readouterr().out
    assert "PASS (bin -)" in text and "head@0           p 0.010  ood -" in text
    assert "evidence    none recorded" in text


def test_the_cell_config_names_the_records(tmp_path, capsys):
    (tmp_path / "cell.yaml").write_text("schema_version: 1\nstorage:\n  records_db: data/r.db\n")
    assert cli(["verdict", "--config", str(tmp_path / "cell.yaml")]) == 2
    assert "data/r.db" in capsys.readouterr().err
