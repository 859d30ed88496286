"""What a part was judged on (coverage, out-of-distribution distances, problems) is recorded
with its verdict and reads back for an auditor; the daemon and the simulator count the parts
the guard stopped."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellctl.app import Cell
from cellctl.config import CellConfig, ResolvedProfile, resolve_profile
from cellctl.decision import ViewResult, decide
from cellctl.inspection import Frame, Inspection, _ood_problem, _Plan, _require_coverage, image_tiles
from cellctl.link.protocol import Verdict
from cellctl.outcome import BIN_OF, Outcome
from cellctl.pipeline.analyse import PartResult, evidence
from cellctl.pipeline.publish import GUARD_KEYS, guard_findings
from cellctl.records import Record, Records
from cellctl.sim.run import guard_figures
from cellctl.sim.world import WORLD_KEY, SimWorld
from tests.conftest import PROFILES

NAN, INF = float("nan"), float("inf")
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def m8() -> ResolvedProfile:
    return resolve_profile(PROFILES / "m8x40-hex.yaml", verify_model=False)


def _inspection(
    views: list[ViewResult],
    coverage: dict[str, float],
    problems: list[str],
    sharpness: dict[str, float | None] | None = None,
) -> Inspection:
    decision = decide(views, THRESHOLD, None, problems)
    # the view a part-level problem is about, by kind, as inspection lists them
    short = tuple(p.split(":")[0] for p in problems if "below the required" in p)
    unfocused = tuple(p.split(":")[0] for p in problems if "out of focus" in p)
    repeated = tuple(p.split(":")[0] for p in problems if "did not turn" in p)
    not_located = tuple(
        p.split(":")[0]
        for p in problems
        if not any(k in p for k in ("below the required", "out of focus", "did not turn"))
    )
    timings = {"prepare": 1.0, "infer": 2.0}
    return Inspection(
        tuple(views),
        coverage,
        tuple(problems),
        not_located,
        short,
        sharpness or {},
        {},
        unfocused,
        repeated,
        decision,
        None,
        timings,
    )


def _result(seq: int, part_id: str, inspection: Inspection | None) -> PartResult:
    views = inspection.views if inspection is not None else ()
    return PartResult(
        seq,
        part_id,
        "m8x40-hex",
        time.monotonic(),
        inspection.decision if inspection is not None else decide([], THRESHOLD, None, ["no views"]),
        {v.name: v.score for v in views if v.score is not None},
        {},
        "b" * 64,
        f"req-{part_id}",
        "c" * 64,
        evidence(inspection) if inspection is not None else {},
    )


def _not_located(rp: ResolvedProfile) -> str:
    """The problem inspection reports for a head frame with no part in it (the empty fixture)."""
    tiles, problems = image_tiles(Frame(np.full((2056, 2464, 3), 3, np.uint8), "RGB8"), "head", rp)
    assert tiles == [] and len(problems) == 1
    return problems[0]


def _coverage_short(rp: ResolvedProfile) -> str:
    """The problem inspection reports for a strip whose tiles cover too little of the shank."""
    plan = _Plan()
    _require_coverage(plan, "strip", 0.9, rp)
    (problem,) = plan.problems
    return problem


def _ood(name: str, distance: float) -> ViewResult:
    problem = _ood_problem(distance, 30.0)  # the wording the guard gives a view past the threshold
    assert problem is not None
    return ViewResult(name, "head" if name.startswith("head") else "shank", 0.1, distance, problem)


async def test_a_recorded_parts_evidence_reads_back_equal_with_non_finite_numbers_as_null(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.db")
    await records.open()
    views = [
        ViewResult("head@0", "head", 0.12, 3.25, None),
        ViewResult("head@90", "head", 0.2, NAN, "no out-of-distribution score"),
        _ood("shank[r0,c0]", 41.5),
    ]
    result = _result(1, "P1", _inspection(views, {"head": 1.0, "shank": NAN}, [], {"head@0": 0.43219, "strip": NAN}))
    seq = await records.accept("c", "P1", "m8x40-hex", "req-P1", "boot1")
    verdict = Verdict(
        cell_id="c",
        boot_id="boot1",
        seq=seq,
        request_id="req-P1",
        part_id="P1",
        profile="m8x40-hex",
        verdict=result.decision.outcome,
        bin=BIN_OF[result.decision.outcome],
        reason=result.decision.reason,
        max_score=result.decision.max_score,
        latency_ms=1.0,
    )
    await records.add(Record(verdict, result.scores, result.timings_ms, result.evidence))
    assert result.decision.outcome is Outcome.RECHECK
    assert guard_findings(result.evidence, result.decision.outcome)["ood_views"] == 1
    assert await records.evidence(seq) == {
        "coverage": {"head": 1.0, "shank": None},  # NaN: JSON has none
        "ood": {"head@0": 3.25, "head@90": None, "shank[r0,c0]": 41.5},
        "problems": [],
        "not_located": [],
        "short_of_coverage": [],
        "sharpness": {"head@0": 0.432, "strip": None},  # NaN: JSON has none
        "noise": {},
        "out_of_focus": [],
        "repeated": [],
        "view_problems": {
            "head@90": "no out-of-distribution score",
            "shank[r0,c0]": "out of distribution (ood 41.5 > 30.0)",
        },
    }
    (raw,) = await records.query("SELECT evidence FROM inspections WHERE seq = ?", seq)
    assert "NaN" not in raw[0] and "Infinity" not in raw[0]
    assert await records.evidence(seq + 1) is None  # no such verdict
    await records.close()


async def test_any_non_finite_number_or_tuple_in_evidence_is_written_as_json_can_hold_it(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.db")
    await records.open()
    seq = await records.accept("c", "P1", "m8x40-hex", "req-P1", "boot1")
    verdict = Verdict(
        cell_id="c",
        boot_id="boot1",
        seq=seq,
        request_id="req-P1",
        part_id="P1",
        profile="m8x40-hex",
        verdict=Outcome.RECHECK,
        bin=BIN_OF[Outcome.RECHECK],
        reason="r",
        max_score=None,
        latency_ms=1.0,
    )
    odd: dict[str, Any] = {"a": (1, INF, -INF), "b": {"c": [NAN, np.float32(0.5), np.int64(3)]}, "d": True}
    await records.add(Record(verdict, {"head@0": NAN}, {}, odd))
    assert await records.evidence(seq) == {"a": [1, None, None], "b": {"c": [None, 0.5, 3]}, "d": True}
    assert await records.query("SELECT scores FROM inspections") == [('{"head@0": null}',)]
    await records.close()


def test_guard_findings_tell_the_guards_problems_apart(m8: ResolvedProfile) -> None:
    located, short = _not_located(m8), _coverage_short(m8)
    assert located.startswith("head@0: ") and "below the required" in short
    ood = _inspection([_ood("head@0", 40.0), _ood("head@90", 35.0)], {"head": 1.0, "shank": 1.0}, [])
    assert guard_findings(evidence(ood), ood.decision.outcome) == {
        "ood_views": 2,
        "ood_parts": 1,
        "not_located": 0,
        "coverage_short": 0,
        "out_of_focus": 0,
        "repeated": 0,
    }
    both = _inspection([], {"head": 0.0, "shank": 0.9}, [located, short])
    assert guard_findings(evidence(both), Outcome.RECHECK) == dict(zip(GUARD_KEYS, (0, 0, 1, 1, 0, 0), strict=True))
    blurred = _inspection([], {"head": 1.0, "shank": 1.0}, ["strip: out of focus (edge sharpness 0.08, at least 0.26)"])
    assert guard_findings(evidence(blurred), Outcome.RECHECK) == dict(zip(GUARD_KEYS, (0, 0, 0, 0, 1, 0), strict=True))
    stalled = _inspection([], {"head": 1.0, "shank": 1.0}, ["head@90: the same view as head@0 (0.004): did not turn"])
    assert guard_findings(evidence(stalled), Outcome.RECHECK) == dict(zip(GUARD_KEYS, (0, 0, 0, 0, 0, 1), strict=True))
    # a defect seen elsewhere makes the part REJECT: then it is not a recheck for the guard
    assert guard_findings(evidence(both), Outcome.REJECT) == dict.fromkeys(GUARD_KEYS, 0)
    # evidence read back from an odd row counts as nothing found, never raises
    assert guard_findings({"view_problems": ["x"], "problems": "x"}, Outcome.RECHECK) == dict.fromkeys(GUARD_KEYS, 0)


async def test_health_counts_the_parts_the_guard_stopped_and_the_sim_reads_the_same_from_the_records(
    tmp_path: Path, m8: ResolvedProfile
) -> None:
    config = CellConfig.model_validate(
        {
            "robot": {"security": "none"},
            "devices": {n: {"url": "sim://"} for n in ("frame_camera", "line_camera", "stage", "lighting")},
        }
    )
    path = tmp_path / "records.db"
    cell = Cell(config, {m8.name: m8}, path, context={WORLD_KEY: SimWorld(seed=1, time_scale=0.0)})
    await cell.records.open()
    clean = {"head": 1.0, "shank": 1.0}
    parts = {
        "P1": _inspection([ViewResult("head@0", "head", 0.1, 2.0, None)], clean, []),  # PASS
        "P2": _inspection([_ood("head@0", 40.0), _ood("shank[r0,c0]", 33.0)], clean, []),  # 2 views OOD
        "P3": _inspection([], {"head": 0.0, "shank": 1.0}, [_not_located(m8)]),  # empty fixture
        "P4": _inspection(
            [ViewResult("head@0", "head", 0.1, 2.0, None)], {"head": 1.0, "shank": 0.9}, [_coverage_short(m8)]
        ),
        "P5": None,  # never inspected (a camera fault): no evidence, nothing for the guard to count
    }
    before = cell.health()["guard"]
    for part_id, inspection in parts.items():
        seq = await cell.writer.accept("c", part_id, m8.name, f"req-{part_id}", cell.boot_id, asyncio.Event())
        assert seq is not None
        await cell.publisher.publish(_result(seq, part_id, inspection))
    health = cell.health()
    assert before == dict.fromkeys(GUARD_KEYS, 0)
    assert health["guard"] == {
        "ood_views": 2,
        "ood_parts": 1,
        "not_located": 1,
        "coverage_short": 1,
        "out_of_focus": 0,
        "repeated": 0,
    }
    assert health["verdicts"] == {"PASS": 1, "RECHECK": 4}
    # the auditor's view of the part that passed: what was covered and how far in distribution
    assert await cell.records.evidence(1) == {
        "coverage": clean,
        "ood": {"head@0": 2.0},
        "problems": [],
        "not_located": [],
        "short_of_coverage": [],
        "sharpness": {},
        "noise": {},
        "out_of_focus": [],
        "repeated": [],
        "view_problems": {},
    }
    assert await cell.records.evidence(5) == {}
    await cell.records.close()
    assert guard_figures(path) == {"out_of_distribution_parts": 1, "not_located_parts": 1}
    with contextlib.closing(sqlite3.connect(path)) as db:
        (n,) = db.execute("SELECT COUNT(*) FROM inspections WHERE evidence != '{}'").fetchone()
    assert n == 4  # every inspected part, passed or not, keeps what it was judged on


def test_the_sim_summary_has_null_guard_figures_when_the_records_cannot_be_read(tmp_path: Path) -> None:
    assert guard_figures(tmp_path / "missing.db") == {"out_of_distribution_parts": None, "not_located_parts": None}
