"""From an acquisition to a ``PartResult``: the part's inspection (cellctl.inspection) on the
inference thread, never on the event loop, and the evidence its record keeps.

Any error on the way is a fault of the step it happened in: the part is RECHECK (or REJECT if
a view the model did score shows a defect), the cell carries on.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from cellctl.config import ResolvedProfile
from cellctl.decision import Decision, decide
from cellctl.fault import Fault, Step
from cellctl.inspection import Inspection, Model, inspect_part
from cellctl.outcome import Outcome
from cellctl.pipeline.acquire import Acquisition

log = structlog.get_logger("cellctl.pipeline.analyse")


ModelKey = tuple[Path, str]  # the file and the sha256 its profile names: a replaced file is another model


def model_key(rp: ResolvedProfile) -> ModelKey:
    return rp.model_path, rp.profile.model.sha256


@dataclass(frozen=True)
class PartResult:
    """Everything the cell knows about one part once it is judged: what publish records and sends."""

    seq: int
    part_id: str
    profile: str
    started_s: float
    decision: Decision
    scores: dict[str, float]
    timings_ms: dict[str, float]
    model_sha256: str | None
    request_id: str | None  # the request the part answered; None for a part of older records
    profile_sha256: str | None  # of the profile file the part was judged under; None if none
    evidence: dict[str, Any] = field(default_factory=dict)  # see evidence(): coverage, ood, problems

    @classmethod
    def not_inspected(
        cls,
        seq: int,
        part_id: str,
        profile: str,
        fault: Fault,
        started_s: float,
        timings_ms: dict[str, float],
        *,
        request_id: str | None,
        profile_sha256: str | None = None,
    ) -> PartResult:
        """A part the cell could not inspect: RECHECK with the fault as its reason."""
        decision = decide([], 0.5, fault)
        return cls(seq, part_id, profile, started_s, decision, {}, timings_ms, None, request_id, profile_sha256)


def evidence(inspection: Inspection) -> dict[str, Any]:
    """What a quality engineer needs beside the scores to see why a part passed: the surface
    covered, each view's out-of-distribution distance and focus, and what stood against a PASS."""
    return {
        "coverage": {k: round(v, 4) for k, v in inspection.coverage.items()},
        "ood": {
            v.name: (round(v.ood, 3) if v.ood is not None and math.isfinite(v.ood) else None) for v in inspection.views
        },
        "problems": list(inspection.problems),
        "not_located": list(inspection.not_located),
        "short_of_coverage": list(inspection.short_of_coverage),
        "sharpness": {name: _rounded(value) for name, value in inspection.sharpness.items()},
        "noise": {name: _rounded(value) for name, value in inspection.noise.items()},
        "out_of_focus": list(inspection.out_of_focus),
        "repeated": list(inspection.repeated),
        "view_problems": {v.name: v.problem for v in inspection.views if v.problem is not None},
    }


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None and math.isfinite(value) else None


def _inspect(acq: Acquisition, rp: ResolvedProfile, model: Model) -> tuple[Inspection | None, Fault | None]:
    """Runs on the inference thread: the part's inspection, or the fault that prevented it."""
    t0 = time.monotonic()
    try:
        if acq.strip is None or len(acq.head_frames) != len(rp.profile.head_positions_deg):
            raise ValueError("not all views were acquired")
        incomplete = [f.frame_id for f in (*acq.head_frames, acq.strip) if not f.complete]
        if incomplete:
            raise ValueError(f"incomplete frame {', '.join(map(str, incomplete))}")
        inspection = inspect_part(acq.head_frames, acq.strip, rp, model)
    except Exception as exc:  # noqa: BLE001 - bad pixels are this part's problem, not the cell's
        acq.timings_ms["preprocess"] = (time.monotonic() - t0) * 1e3
        return None, Fault.of(Step.PREPROCESS, exc)
    acq.timings_ms["preprocess"] = inspection.timings_ms["prepare"]
    acq.timings_ms["infer"] = inspection.timings_ms["infer"]
    return inspection, inspection.fault


async def analyse(
    acq: Acquisition, inferencers: dict[ModelKey, Model], executor: Executor, timeout_s: float
) -> PartResult:
    """The part's decision; never raises for anything the part brought with it."""
    rp = acq.profile
    inferencer = inferencers.get(model_key(rp)) if rp is not None else None
    inspection: Inspection | None = None
    fault = acq.fault
    if fault is None and rp is not None and inferencer is not None:
        work = asyncio.get_running_loop().run_in_executor(executor, _inspect, acq, rp, inferencer)
        try:
            inspection, fault = await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            fault = Fault(Step.INFER, f"no result within {timeout_s:g} s")
    elif fault is None:
        fault = Fault(Step.INFER, "no model loaded for this profile")
    if fault is not None and fault is not acq.fault:
        log.warning("analyse.fault", **acq.ids(), step=fault.step.value, fault=fault.detail)
    if inspection is not None and inspection.decision.outcome is Outcome.RECHECK:
        log.info("analyse.recheck", **acq.ids(), reason=inspection.decision.reason)
    views = inspection.views if inspection is not None else ()
    threshold = rp.profile.decision.threshold if rp is not None else 0.5
    return PartResult(
        seq=acq.seq,
        part_id=acq.part_id,
        profile=acq.profile_name,
        started_s=acq.started_s,
        decision=inspection.decision if inspection is not None else decide(views, threshold, fault),
        scores={v.name: v.score for v in views if v.score is not None},
        timings_ms=acq.timings_ms,
        model_sha256=inferencer.sha256 if inferencer is not None else None,
        request_id=acq.request_id,
        profile_sha256=rp.sha256 if rp is not None else None,
        evidence=evidence(inspection) if inspection is not None else {},
    )
