"""From an acquisition to a decision: preprocessing and inference, off the event loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import numpy as np

from cellctl.cycle import Acquisition
from cellctl.decision import Decision, decide
from cellctl.inference import OnnxInferencer
from cellctl.vision import InvalidImage, prepare_batch


def _score(acq: Acquisition, inferencer: OnnxInferencer) -> tuple[np.ndarray, dict[str, float]]:
    rp = acq.profile
    t0 = time.monotonic()
    for frame in (*acq.head_frames, acq.strip):
        if frame is not None and not frame.complete:
            raise InvalidImage(f"incomplete frame {frame.frame_id}")
    assert acq.strip is not None
    prepared = prepare_batch(
        [(f.data, f.pixel_format) for f in acq.head_frames],
        (acq.strip.data, acq.strip.pixel_format),
        rp.views,
        rp.profile.preprocess,
    )
    d = rp.profile.decision
    for view, level in zip(rp.views, prepared.brightness):
        if not d.min_view_brightness <= level <= d.max_view_brightness:
            raise InvalidImage(
                f"{view.name} brightness {level:.3f} outside "
                f"[{d.min_view_brightness:g}, {d.max_view_brightness:g}] (no part, no light, or overexposed)"
            )
    t1 = time.monotonic()
    scores = inferencer.infer(prepared.batch)
    t2 = time.monotonic()
    return scores, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3}


async def analyse(
    acq: Acquisition, inferencer: OnnxInferencer, executor: Executor, timeout_s: float
) -> tuple[Decision, dict[str, float]]:
    """Decision and per-view scores ({view name: p}); faults and timeouts give RECHECK."""
    rp = acq.profile
    names = [v.name for v in rp.views]
    threshold = rp.profile.decision.threshold
    if acq.fault is not None:
        return decide(names, None, threshold, acq.fault), {}
    loop = asyncio.get_running_loop()
    try:
        scores, timings = await asyncio.wait_for(
            loop.run_in_executor(executor, _score, acq, inferencer), timeout_s
        )
    except TimeoutError:
        return decide(names, None, threshold, f"inference: no result within {timeout_s:g} s"), {}
    except InvalidImage as exc:
        return decide(names, None, threshold, f"invalid image: {exc}"), {}
    acq.timings_ms.update(timings)
    return decide(names, scores.tolist(), threshold, None), dict(zip(names, scores.tolist()))
