"""Labelled model inputs rendered by the simulator, through the daemon's own preprocessing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from cellctl.config import ResolvedProfile
from cellctl.sim.part import SimPart, sample_part
from cellctl.sim.scene import Renderer, StripRender
from cellctl.sim.sensor import encode
from cellctl.sim.truth import view_labels
from cellctl.vision import prepare_batch


@dataclass(frozen=True)
class PartRender:
    part: SimPart
    head_frames: list[tuple[np.ndarray, str]]  # as the frame camera delivers them
    strip_frame: tuple[np.ndarray, str]  # as the line-scan camera delivers it
    strip: StripRender
    labels: list[bool | None]


def render_part(renderer: Renderer, rp: ResolvedProfile, part: SimPart) -> PartRender:
    p = rp.profile
    heads = [renderer.head_view(part, a) for a in p.head_positions_deg]
    strip = renderer.strip(part, p.line_scan.lines_per_revolution, p.line_scan.line_width_px)
    head_frames = [(encode(h.image, p.frame_camera.pixel_format), p.frame_camera.pixel_format) for h in heads]
    strip_frame = (encode(strip.image, p.line_scan.pixel_format), p.line_scan.pixel_format)
    return PartRender(part, head_frames, strip_frame, strip, view_labels(part, p, strip, rp.views))


def iter_parts(rp: ResolvedProfile, seed: int, count: int, defect_rate: float) -> Iterator[PartRender]:
    renderer = Renderer(seed)
    rng = np.random.default_rng([seed, 1])
    for i in range(count):
        part = sample_part(rng, rp.profile.geometry, f"{rp.name}-{seed}-{i:05d}", rng.random() < defect_rate)
        yield render_part(renderer, rp, part)


def _tensors(args: tuple[ResolvedProfile, int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    rp, seed, count, defect_rate = args
    xs, ys = [], []
    for r in iter_parts(rp, seed, count, defect_rate):
        batch = prepare_batch(r.head_frames, r.strip_frame, rp.views, rp.profile.preprocess).batch
        for x, y in zip(batch, r.labels, strict=True):
            if y is not None:  # ambiguous crops teach nothing reliable
                xs.append(x)
                ys.append(float(y))
    return np.stack(xs), np.asarray(ys, np.float32)


def build_tensors(
    profiles: list[ResolvedProfile], seed: int, parts_per_profile: int, defect_rate: float, workers: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, S, S) inputs and (N,) labels, rendered in ``workers`` processes, deterministic."""
    chunk = 25
    jobs = [
        (rp, seed * 100_003 + k * 1_009 + j, min(chunk, parts_per_profile - j * chunk), defect_rate)
        for k, rp in enumerate(profiles)
        for j in range((parts_per_profile + chunk - 1) // chunk)
    ]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_tensors, jobs))
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])
