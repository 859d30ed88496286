"""From an acquisition to a ``PartResult``: preprocessing, inference and decision.

Pixels and inference run on the inference thread, never on the event loop. The model's
output is checked (shape, finite, within [0, 1]) before it is trusted, and any error on the
way is a fault of the step it happened in: the part is RECHECK, the cell carries on.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

from cellctl.config import ResolvedProfile
from cellctl.decision import Decision, decide
from cellctl.fault import Fault, Step
from cellctl.pipeline.acquire import Acquisition
from cellctl.vision import prepare_batch

log = structlog.get_logger("cellctl.pipeline.analyse")


class Inferencer(Protocol):
    path: Path
    sha256: str

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Defect probability per view of an N x 3 x S x S batch; blocking."""
        ...


ModelKey = tuple[Path, str]  # the file and the sha256 its profile names: a replaced file is another model


def model_key(rp: ResolvedProfile) -> ModelKey:
    return rp.model_path, rp.profile.model.sha256


class InvalidOutput(Exception):
    """The model answered something that is not one probability per view."""


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
        decision = decide([], None, 0.5, fault)
        return cls(seq, part_id, profile, started_s, decision, {}, timings_ms, None, request_id, profile_sha256)


def checked_scores(raw: object, views: int) -> np.ndarray:
    """The model output as one finite probability in [0, 1] per view, or InvalidOutput."""
    out = np.asarray(raw)
    if out.size != views or out.ndim > 2:
        raise InvalidOutput(f"model output shape {out.shape} for {views} views")
    if not np.issubdtype(out.dtype, np.floating):
        raise InvalidOutput(f"model output of type {out.dtype}, not floating point")
    scores = out.astype(np.float64).reshape(views)
    if not np.isfinite(scores).all():
        raise InvalidOutput(f"non-finite model output in {int((~np.isfinite(scores)).sum())} of {views} views")
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise InvalidOutput(f"model output {scores.min():.3g}..{scores.max():.3g} outside [0, 1]")
    return scores


def _score(acq: Acquisition, rp: ResolvedProfile, inferencer: Inferencer) -> tuple[np.ndarray | None, Fault | None]:
    """Runs on the inference thread. Scores per view, or the fault that prevented them."""
    t0 = time.monotonic()
    try:
        frames = [*acq.head_frames, acq.strip]
        if acq.strip is None or len(acq.head_frames) != len(rp.profile.head_positions_deg):
            raise ValueError("not all views were acquired")
        incomplete = [f.frame_id for f in frames if f is not None and not f.complete]
        if incomplete:
            raise ValueError(f"incomplete frame {', '.join(map(str, incomplete))}")
        prepared = prepare_batch(
            [(f.data, f.pixel_format) for f in acq.head_frames],
            (acq.strip.data, acq.strip.pixel_format),
            rp.views,
            rp.profile.preprocess,
        )
        d = rp.profile.decision
        for view, level in zip(rp.views, prepared.brightness, strict=True):
            if not d.min_view_brightness <= level <= d.max_view_brightness:
                raise ValueError(
                    f"{view.name} brightness {level:.3f} outside [{d.min_view_brightness:g}, "
                    f"{d.max_view_brightness:g}] (no part, no light, or overexposed)"
                )
    except Exception as exc:  # noqa: BLE001 - bad pixels are this part's problem, not the cell's
        return None, Fault.of(Step.PREPROCESS, exc)
    t1 = time.monotonic()
    try:
        scores = checked_scores(inferencer.infer(prepared.batch), len(rp.views))
    except Exception as exc:  # noqa: BLE001 - onnxruntime errors, a broken model, an invalid output
        return None, Fault.of(Step.INFER, exc)
    finally:
        acq.timings_ms["preprocess"] = (t1 - t0) * 1e3
        acq.timings_ms["infer"] = (time.monotonic() - t1) * 1e3
    return scores, None


async def analyse(
    acq: Acquisition, inferencers: dict[ModelKey, Inferencer], executor: Executor, timeout_s: float
) -> PartResult:
    """The part's decision; never raises for anything the part brought with it."""
    rp = acq.profile
    names = [v.name for v in rp.views] if rp is not None else []
    threshold = rp.profile.decision.threshold if rp is not None else 0.5
    inferencer = inferencers.get(model_key(rp)) if rp is not None else None
    scores: np.ndarray | None = None
    fault = acq.fault
    if fault is None and rp is not None and inferencer is not None:
        work = asyncio.get_running_loop().run_in_executor(executor, _score, acq, rp, inferencer)
        try:
            scores, fault = await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            fault = Fault(Step.INFER, f"no result within {timeout_s:g} s")
    elif fault is None:
        fault = Fault(Step.INFER, "no model loaded for this profile")
    if fault is not None and fault is not acq.fault:
        log.warning(
            "analyse.fault",
            **acq.ids(),
            step=fault.step.value,
            fault=fault.detail,
        )
    values = scores.tolist() if scores is not None else None
    return PartResult(
        seq=acq.seq,
        part_id=acq.part_id,
        profile=acq.profile_name,
        started_s=acq.started_s,
        decision=decide(names, values, threshold, fault),
        scores=dict(zip(names, values, strict=True)) if values is not None else {},
        timings_ms=acq.timings_ms,
        model_sha256=inferencer.sha256 if inferencer is not None else None,
        request_id=acq.request_id,
        profile_sha256=rp.sha256 if rp is not None else None,
    )
