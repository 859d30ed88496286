"""Ground truth per image region: does this tile show a relevant indication?

Works for any tiling: renders return the drawn path of every indication (frame or strip
pixels), so a tile is labelled by how much of a relevant indication's path lies inside it.
Relevant = at least the profile's minimum length and contrast (sim/part.py); in a head
frame the contrast is the one drawn in that view (it falls off towards the silhouette) and
an indication seen too obliquely is never a clear positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cellctl.config import PartProfile, ViewSpec
from cellctl.sim.part import SimPart
from cellctl.sim.scene import FRAME_SHAPE, HeadRender, StripRender, head_paths
from cellctl.train.masks import CLEAR_PX

CLEAR_COS = 0.45  # between VISIBLE_COS and this, a head indication is seen too obliquely to call
# px of indication path inside a tile for it to count (fewer is ambiguous): the rule that labels
# tiles by masks in training (cellctl/train/masks.py)
CLEAR_POINTS = CLEAR_PX

HeadPaths = tuple[tuple[np.ndarray, ...], tuple[float, ...], tuple[float, ...]]  # paths, visibility, contrast


def tile_label(
    paths: Sequence[np.ndarray],
    relevant_mask: Sequence[bool],
    x: float,
    y: float,
    w: float,
    h: float,
    *,
    wrap_rows: int | None = None,
) -> bool | None:
    """True: a relevant indication has >= CLEAR_POINTS px of path inside the tile; False: no
    indication path inside; None: only a sub-threshold one, or only a few px at the tile edge.

    ``wrap_rows``: the image is periodic in its rows (the strip: one turn), a tile may run past
    the last row into the first.
    """
    most, seen = 0, False
    for pts, relevant in zip(paths, relevant_mask, strict=True):
        if len(pts) == 0:
            continue
        dy = pts[:, 1] - y
        if wrap_rows is not None:
            dy = np.mod(dy, wrap_rows)
        inside = int(np.count_nonzero((pts[:, 0] >= x) & (pts[:, 0] < x + w) & (dy >= 0) & (dy < h)))
        seen = seen or inside > 0
        if relevant:
            most = max(most, inside)
    if most >= CLEAR_POINTS:
        return True
    return None if seen else False


def head_relevant(
    part: SimPart, view: HeadRender | HeadPaths, min_length_mm: float | None = None, min_contrast: float | None = None
) -> tuple[bool, ...]:
    """Per indication: relevant as drawn in this head frame (its length, the contrast drawn
    there, seen clearly enough)."""
    paths, visibility, contrast = (view.paths, view.visibility, view.contrast) if isinstance(view, HeadRender) else view
    length = part.min_length_mm if min_length_mm is None else min_length_mm
    level = part.min_contrast if min_contrast is None else min_contrast
    return tuple(
        len(p) > 0 and ind.length_mm >= length and c >= level and v >= CLEAR_COS
        for ind, p, v, c in zip(part.indications, paths, visibility, contrast, strict=True)
    )


def strip_relevant(
    part: SimPart, strip: StripRender, min_length_mm: float | None = None, min_contrast: float | None = None
) -> tuple[bool, ...]:
    length = part.min_length_mm if min_length_mm is None else min_length_mm
    level = part.min_contrast if min_contrast is None else min_contrast
    drawn = strip.contrast or tuple(i.contrast for i in part.indications)
    return tuple(
        len(p) > 0 and ind.length_mm >= length and c >= level
        for ind, p, c in zip(part.indications, strip.points, drawn, strict=True)
    )


def view_labels(
    part: SimPart,
    profile: PartProfile,
    strip: StripRender,
    views: Sequence[ViewSpec],
    heads: Sequence[HeadRender] | None = None,
    *,
    min_length_mm: float | None = None,
    min_contrast: float | None = None,
) -> list[bool | None]:
    """Per view (a tile of a head frame or of the strip): True defect visible, False clean,
    None ambiguous. Head paths come from ``heads`` when given, else are recomputed (the same
    geometry the renderer draws)."""
    cache: dict[int, HeadPaths] = {}
    rows = strip.image.shape[0]
    strip_mask = strip_relevant(part, strip, min_length_mm, min_contrast)
    labels: list[bool | None] = []
    for view in views:
        if view.kind == "head":
            if view.source not in cache:
                if heads is not None:
                    r = heads[view.source]
                    cache[view.source] = (r.paths, r.visibility, r.contrast)
                else:
                    cache[view.source] = head_paths(part, profile.head_positions_deg[view.source])
            paths = cache[view.source]
            mask = head_relevant(part, paths, min_length_mm, min_contrast)
            labels.append(tile_label(paths[0], mask, view.x_px, view.y_px, view.width_px, view.height_px))
        else:
            labels.append(
                tile_label(
                    strip.points, strip_mask, view.x_px, view.y_px, view.width_px, view.height_px, wrap_rows=rows
                )
            )
    return labels


def head_frame_label(
    part: SimPart, view: HeadRender | HeadPaths, min_length_mm: float | None = None, min_contrast: float | None = None
) -> bool | None:
    """The whole head frame as one region (e.g. an export of labelled frames)."""
    paths = view.paths if isinstance(view, HeadRender) else view[0]
    mask = head_relevant(part, view, min_length_mm, min_contrast)
    return tile_label(paths, mask, 0, 0, FRAME_SHAPE[1], FRAME_SHAPE[0])
