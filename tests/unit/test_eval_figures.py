"""The figures `cellctl eval` adds beside its confusion: how the scores rank items (AUC, what
zero escapes would cost) and good parts split by what they carry below the minimum."""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

import pytest

from cellctl.decision import ViewResult
from cellctl.drawn import BadRecord, Drawn, breakdown, drawn_record, read_drawn
from cellctl.ranking import auc, item_score, ranking


def _pairs_auc(good: list[float], defective: list[float]) -> float:
    """The definition, pair by pair."""
    wins = sum(1.0 if d > g else 0.5 if d == g else 0.0 for g, d in itertools.product(good, defective))
    return wins / (len(good) * len(defective))


def test_auc_counts_every_pair_and_ties_half():
    assert auc([0.1, 0.2, 0.5], [0.4, 0.5, 0.9]) == pytest.approx(7.5 / 9)
    assert auc([0.1], [0.9]) == 1.0 and auc([0.9], [0.1]) == 0.0 and auc([0.3], [0.3]) == 0.5
    assert auc([], [0.5]) is None and auc([0.5], []) is None
    rng = random.Random(3)
    for _ in range(20):  # with many ties (scores on a coarse grid)
        good = [rng.randrange(10) / 10 for _ in range(rng.randrange(1, 30))]
        defective = [rng.randrange(10) / 10 for _ in range(rng.randrange(1, 30))]
        assert auc(good, defective) == pytest.approx(_pairs_auc(good, defective))


def test_ranking_reports_what_no_escape_would_cost_and_counts_unscored_items_apart():
    r = ranking([("good", 0.1), ("good", 0.5), ("good", 0.45), ("defect", 0.45), ("defect", 0.9), ("good", None)])
    assert r["scored_good"] == 3 and r["scored_defective"] == 2 and r["unscored"] == 1
    assert r["zero_escape_threshold"] == 0.45
    assert r["false_rejects_at_zero_escapes"] == 2  # 0.5 and the tie at 0.45: decide rejects at >= threshold
    assert r["auc"] == round(_pairs_auc([0.1, 0.5, 0.45], [0.45, 0.9]), 4)
    empty = ranking([("good", 0.2)])
    assert empty["auc"] is None and empty["zero_escape_threshold"] is None


def test_an_items_score_is_its_highest_trusted_view():
    views = [
        ViewResult("head@0", "head", 0.3, 1.0, None),
        ViewResult("head@90", "head", 0.99, 9.0, "out of distribution"),  # cannot reject: not its score
        ViewResult("shank[r0,c0]", "shank", float("nan"), None, None),
        ViewResult("shank[r0,c1]", "shank", None, None, "no part"),
    ]
    assert item_score(views) == 0.3
    assert item_score(views[1:]) is None


def _record(folder: Path, indications: list[tuple[float, float]], min_length: float = 1.0, min_contrast: float = 30):
    folder.mkdir(parents=True)
    inds = [{"length_mm": length, "contrast": contrast} for length, contrast in indications]
    data = {"indications": inds, "min_length_mm": min_length, "min_contrast": min_contrast}
    (folder / "part.json").write_text(json.dumps(data))
    return folder


def test_a_parts_record_gives_its_indications_sizes_relative_to_the_limit(tmp_path):
    drawn = read_drawn(_record(tmp_path / "a", [(0.9, 100.0), (5.0, 27.0), (0.3, 20.0)]))
    # 0.9 mm at 100 is 0.9 of the length limit; 5 mm at 27 is 0.9 of the contrast limit
    assert drawn == Drawn(subthreshold=3, nearest_below=pytest.approx(0.9), strongest=None)
    drawn = read_drawn(_record(tmp_path / "b", [(2.0, 45.0), (1.0, 30.0), (0.5, 60.0)]))
    assert drawn == Drawn(subthreshold=1, nearest_below=pytest.approx(0.5), strongest=pytest.approx(1.5))
    assert read_drawn(_record(tmp_path / "c", [])) == Drawn(0, None, None)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "part.json").write_text("{not json")
    assert read_drawn(tmp_path / "d") is None  # damaged: unrecorded, never a crash
    assert read_drawn(tmp_path / "missing") is None
    assert read_drawn(_record(tmp_path / "e", [(1.0, 30.0)], min_length=0)) is None  # not one the simulator wrote


def test_a_record_that_cannot_be_used_is_refused_with_why_and_never_read_whole(tmp_path):
    cases = {
        "deep": "[" * 100_000 + "]" * 100_000,
        "huge_number": '{"indications": [{"length_mm": 1e400, "contrast": 4}], "min_length_mm": 1, "min_contrast": 3}',
        "nan": '{"indications": [{"length_mm": NaN, "contrast": 40}], "min_length_mm": 1, "min_contrast": 30}',
        "tiny_limit": '{"indications": [{"length_mm": 1e300, "contrast": 1e300}], "min_length_mm": 1e-300, '
        '"min_contrast": 1e-300}',
        "big_int": '{"indications": [{"length_mm": 1' + "0" * 400 + ', "contrast": 40}], "min_length_mm": 1, '
        '"min_contrast": 30}',
        "list": "[]",
        "no_key": '{"indications": []}',
    }
    whys = {}
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.json").write_text(text)
        with pytest.raises(BadRecord) as info:
            drawn_record(tmp_path / name)
        whys[name] = str(info.value)
        assert read_drawn(tmp_path / name) is None
    assert whys["deep"] == "nested too deeply to be a part record"
    assert whys["huge_number"] == "not valid JSON: 1e400 is not a finite number"
    assert whys["nan"] == "not valid JSON: NaN is not a finite number"
    assert whys["tiny_limit"].endswith("is not a finite number >= 0")
    assert whys["big_int"].startswith("not a record of cellctl sim") and whys["no_key"] == "no 'min_length_mm' in it"
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "part.json")
    with pytest.raises(BadRecord, match=r"^not a regular file: a FIFO$"):
        drawn_record(tmp_path / "fifo")
    (tmp_path / "folder" / "part.json").mkdir(parents=True)
    with pytest.raises(BadRecord, match=r"^not a regular file: a folder$"):
        drawn_record(tmp_path / "folder")
    assert drawn_record(tmp_path / "missing") is None  # a plant part: no record, nothing wrong


def test_the_breakdown_counts_clean_good_parts_apart_from_those_carrying_small_indications():
    clean, small, near = Drawn(0, None, None), Drawn(2, 0.6, None), Drawn(1, 0.95, None)
    parts = [
        ("good", "good", clean),
        ("good", "defect", clean),
        ("good", "defect", near),
        ("good", "recheck", small),
        ("defect", "defect", Drawn(0, None, 2.0)),
        ("good", "defect", None),
    ]
    b = breakdown(parts)
    assert b["good_clean"] == {"n": 2, "false_rejects": 1, "rechecks": 0}
    assert b["good_with_subthreshold"] == {"n": 2, "false_rejects": 1, "rechecks": 1}
    assert b["good_near_limit"] == {"0.9": 1, "0.75": 1, "0.5": 2} and b["unrecorded"] == 1
    assert breakdown([("good", "good", None)]) is None  # plant parts: no breakdown at all
