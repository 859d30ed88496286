"""Labelled model inputs rendered by the simulator, tiled by the daemon's own code: the views
and labels tests hold the shipped model to (tests/unit/test_model.py; the student factory,
cellctl.train, reads exported renders instead).

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
from dataclasses import dataclass

import numpy as np

from cellctl.config import ResolvedProfile, ViewSpec
from cellctl.inspection import Frame, image_tiles, model_inputs
from cellctl.sim.export import Shots
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
