"""Tiles over the located part, and the fraction of its surface they cover.

Each tile is one model input, resized to the model's square input: its size in camera pixels
is the scale the student sees (the profile's ``head_tile_px`` / ``shank_tile_px``, checked at
load time against the smallest indication the profile must find). Tiles overlap by the
profile's ``tile_overlap`` so that an indication cut by one tile's edge lies whole in the next.

Head frames: tiles cover the head flank, a margin round its silhouette and the under-head
fillet. A tile larger than that region is aligned with its top, as in training, so it also
sees the upper shank. The strip: tiles cover the shank from the under-head face to its end
along the axis and the whole revolution around it; the strip is periodic in its rows (one
turn), so the last row of tiles wraps over to the first rows.
"""

from __future__ import annotations

import math

import numpy as np

from cellctl.config import PartProfile, ViewSpec
from cellctl.vision.locate import FILLET_MM, MARGIN_MM, HeadLocation, StripLocation


def spans(start: float, end: float, size: int, overlap: float, limit: int) -> list[int]:
    """Offsets of tiles of ``size`` that cover [start, end) with at least ``overlap`` between
    neighbours, kept inside [0, limit); one tile centred on the span if it fits in one."""
    length = end - start
    if length <= size:
        offsets = [start + (length - size) / 2.0]
    else:
        count = math.ceil((length - size) / (size * (1.0 - overlap))) + 1
        step = (length - size) / (count - 1)
        offsets = [start + k * step for k in range(count)]
    return [int(min(max(round(o), 0), limit - size)) for o in offsets]


def head_tiles(
    loc: HeadLocation, source: int, angle_deg: float, profile: PartProfile, shape: tuple[int, int]
) -> list[ViewSpec]:
    side = profile.preprocess.head_tile_px
    overlap = profile.inspection.tile_overlap
    rows, cols = shape
    x0, y0, x1, y1 = loc.box
    xs = spans(x0, x1, side, overlap, cols)
    # a region shorter than a tile: the tile starts at its top (the head), like the training crops
    ys = [min(max(y0, 0), rows - side)] if y1 - y0 <= side else spans(y0, y1, side, overlap, rows)
    names = [f"head@{angle_deg:g}"] + [f"head@{angle_deg:g}#{k}" for k in range(1, len(xs) * len(ys))]
    return [
        ViewSpec(name, "head", source, x, y, side, side)
        for name, (y, x) in zip(names, [(y, x) for y in ys for x in xs], strict=True)
    ]


def strip_tiles(loc: StripLocation, profile: PartProfile, width: int) -> list[ViewSpec]:
    tile, overlap = profile.preprocess.shank_tile_px, profile.inspection.tile_overlap
    margin = MARGIN_MM * profile.optics.line_px_per_mm  # the shank's end face edge is inspected too
    xs = spans(loc.datum_px - margin, loc.end_px + margin, tile.axis, overlap, width)
    count = math.ceil(loc.rows / (tile.around * (1.0 - overlap)))
    # even offsets keep a Bayer strip's mosaic phase; rows past the end wrap round (one turn)
    ys = sorted({int(k * loc.rows / count) & ~1 for k in range(count)})
    return [
        ViewSpec(f"shank[r{r},c{c}]", "shank", -1, x, y, tile.axis, tile.around)
        for r, y in enumerate(ys)
        for c, x in enumerate(xs)
    ]


def nominal_tile_count(profile: PartProfile) -> int:
    """Tiles of a part of nominal size seated at the fixture position: what a part costs the
    model (``cellctl bench``), before any part is seen."""
    g, optics, overlap = profile.geometry, profile.optics, profile.inspection.tile_overlap
    side = profile.preprocess.head_tile_px
    head_w = (g.head_across_flats_mm / math.cos(math.pi / 6) + 2 * MARGIN_MM) * optics.frame_px_per_mm
    head_h = (g.head_height_mm + MARGIN_MM + FILLET_MM) * optics.frame_px_per_mm
    per_frame = len(spans(0, head_w, side, overlap, 1 << 20)) * (
        1 if head_h <= side else len(spans(0, head_h, side, overlap, 1 << 20))
    )
    tile = profile.preprocess.shank_tile_px
    axis = (g.length_mm + 2 * MARGIN_MM) * optics.line_px_per_mm
    around = math.ceil(profile.line_scan.lines_per_revolution / (tile.around * (1.0 - overlap)))
    return len(profile.head_positions_deg) * per_frame + around * len(spans(0, axis, tile.axis, overlap, 1 << 20))


def head_coverage(loc: HeadLocation, tiles: list[ViewSpec]) -> float:
    """Fraction of the head's silhouette pixels inside the box (flank and fillet) that lie in a tile."""
    step = loc.plane.step_x
    x0, y0, x1, y1 = (v // step for v in loc.box)
    surface = loc.silhouette.mask[y0 : y1 + 1, x0 : x1 + 1]
    covered = np.zeros_like(surface)
    for t in tiles:
        tx0, ty0 = t.x_px // step - x0, t.y_px // step - y0
        tx1, ty1 = tx0 + t.width_px // step, ty0 + t.height_px // step
        covered[max(ty0, 0) : max(ty1, 0), max(tx0, 0) : max(tx1, 0)] = True
    total = int(surface.sum())
    return float((surface & covered).sum()) / total if total else 0.0


def strip_coverage(loc: StripLocation, tiles: list[ViewSpec]) -> float:
    """Fraction of the lit shank (under-head face to end, whole revolution) inside a tile.

    Row tiles span the whole turn by construction; the columns decide, and so does the part
    being lit all the way round (a slipped or unlit part shows as a smaller lit fraction).
    """
    span = np.zeros(loc.end_px - loc.datum_px, bool)
    for t in tiles:
        span[max(t.x_px - loc.datum_px, 0) : max(t.x_px + t.width_px - loc.datum_px, 0)] = True
    rows_covered = _rows_covered(tiles, loc.rows)
    return float(span.mean()) * rows_covered * loc.lit_fraction if span.size else 0.0


def _rows_covered(tiles: list[ViewSpec], rows: int) -> float:
    seen = np.zeros(rows, bool)
    for t in tiles:
        seen[np.arange(t.y_px, t.y_px + t.height_px) % rows] = True
    return float(seen.mean())
