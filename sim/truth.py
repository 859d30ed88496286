"""Ground truth per model view: does this crop show a true indication?"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cellctl.config import PartProfile, ViewSpec
from cellctl.sim.part import SimPart
from cellctl.sim.scene import VISIBLE_COS, StripRender

CLEAR_COS = 0.45  # between VISIBLE_COS and this, a head indication is seen too obliquely to call
CLEAR_POINTS = 8  # px of indication path inside a tile for it to count; fewer is ambiguous


def view_labels(
    part: SimPart, profile: PartProfile, strip: StripRender, views: Sequence[ViewSpec]
) -> list[bool | None]:
    """True: defect visible; False: clean; None: ambiguous (edge of a tile, grazing angle)."""
    labels: list[bool | None] = []
    for view in views:
        if view.kind == "head":
            labels.append(_head_label(part, profile.head_positions_deg[view.source]))
        else:
            labels.append(_tile_label(strip, view))
    return labels


def _head_label(part: SimPart, angle_deg: float) -> bool | None:
    best = -1.0
    for ind in part.indications:
        if ind.region == "head":
            best = max(best, math.cos(math.radians(ind.azimuth_deg - angle_deg)))
    if best >= CLEAR_COS:
        return True
    return None if best > VISIBLE_COS else False


def _tile_label(strip: StripRender, view: ViewSpec) -> bool | None:
    most = 0
    for pts in strip.points:
        if len(pts) == 0:
            continue
        inside = (
            (pts[:, 0] >= view.x_px)
            & (pts[:, 0] < view.x_px + view.width_px)
            & (pts[:, 1] >= view.y_px)
            & (pts[:, 1] < view.y_px + view.height_px)
        )
        most = max(most, int(inside.sum()))
    if most >= CLEAR_POINTS:
        return True
    return None if most > 0 else False
