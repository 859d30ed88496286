"""Labelled model inputs rendered by the simulator, tiled by the daemon's own code.

Each part is shot as the cameras shoot it (cellctl.sim.export.shoot), located and tiled by
cellctl.inspection.image_tiles exactly as the daemon tiles it, and each tile is labelled by
sim/truth.py from the drawn indication paths: True when a relevant indication (at or above the
profile's minimum length and contrast) lies clearly inside it, False when no indication is
drawn there, None (left out) when only a sub-threshold or a clipped one is: a label must be
unambiguous. A view the daemon would not tile (part not located) gives no tiles, as it gives
the daemon nothing to score.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from cellctl.config import ResolvedProfile, ViewSpec
from cellctl.inspection import Frame, image_tiles, model_inputs
from cellctl.sim.conditions import DEFAULT, Conditions
from cellctl.sim.export import Shots, sample_parts, shoot
from cellctl.sim.scene import Renderer
from cellctl.sim.truth import head_relevant, strip_relevant, tile_label


@dataclass(frozen=True)
class LabelledTiles:
    kind: str  # "head" | "shank"
    tiles: list[ViewSpec]
    labels: list[bool | None]
    batch: np.ndarray  # the model inputs of ``tiles``


def labelled_tiles(shots: Shots, rp: ResolvedProfile) -> Iterator[LabelledTiles]:
    """Every head frame's and the strip's tiles with their labels."""
    ins = rp.profile.inspection
    lo_len, lo_con = ins.min_indication_length_mm, ins.min_indication_contrast
    for render, (data, fmt) in zip(shots.head_renders, shots.heads, strict=True):
        frame = Frame(data, fmt)
        tiles, _ = image_tiles(frame, "head", rp)
        mask = head_relevant(shots.part, render, lo_len, lo_con)
        labels = [tile_label(render.paths, mask, t.x_px, t.y_px, t.width_px, t.height_px) for t in tiles]
        yield LabelledTiles("head", tiles, labels, model_inputs(frame, tiles, rp))
    frame = Frame(*shots.strip)
    tiles, _ = image_tiles(frame, "shank", rp)
    render = shots.strip_render
    mask = strip_relevant(shots.part, render, lo_len, lo_con)
    rows = render.image.shape[0]
    labels = [tile_label(render.points, mask, t.x_px, t.y_px, t.width_px, t.height_px, wrap_rows=rows) for t in tiles]
    yield LabelledTiles("shank", tiles, labels, model_inputs(frame, tiles, rp))


def _tensors(args: tuple[ResolvedProfile, int, int, float, Conditions]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rp, seed, count, defect_rate, conditions = args
    renderer = Renderer(seed)
    xs, ys, kinds = [], [], []
    for part in sample_parts(rp, seed, count, defect_rate, conditions):
        shots = shoot(renderer, rp, part)
        for lt in labelled_tiles(shots, rp):
            keep = [i for i, y in enumerate(lt.labels) if y is not None]  # ambiguous tiles teach nothing
            xs += [lt.batch[i] for i in keep]
            ys += [float(bool(lt.labels[i])) for i in keep]
            kinds += [lt.kind == "head"] * len(keep)
    return np.stack(xs), np.asarray(ys, np.float32), np.asarray(kinds, bool)


def build_tensors(
    profiles: list[ResolvedProfile],
    seed: int,
    parts_per_profile: int,
    defect_rate: float,
    workers: int = 2,
    conditions: Conditions = DEFAULT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3, S, S) inputs, (N,) labels and (N,) is-head flags, rendered in ``workers``
    processes, deterministic for a seed."""
    chunk = 25
    jobs = [
        (rp, seed * 100_003 + k * 1_009 + j, min(chunk, parts_per_profile - j * chunk), defect_rate, conditions)
        for k, rp in enumerate(profiles)
        for j in range((parts_per_profile + chunk - 1) // chunk)
    ]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_tensors, jobs))
    return (
        np.concatenate([r[0] for r in results]),
        np.concatenate([r[1] for r in results]),
        np.concatenate([r[2] for r in results]),
    )
