"""Bare patches: where the part is and no particle film glows.

An indication is particles held at a leak of flux; where the bath never wetted the surface, a
drop of oil or a finger kept it off, or something in front of the part hides it, nothing can
gather and nothing can be seen. The tiles over such a patch score clean film, and the
coverage, measured on the lit silhouette, reads whole. So the dark inside the part's outline
is measured: on the head, inside the convex outline of the head's silhouette (a hex head seen
from the side is convex); on the strip, inside the shank from the under-head face to its end,
all the way round (the strip wraps round, so a patch across its first and last lines is one).
Dark is near the background: below ``BARE_LEVEL`` of the way from the background to the
part's median surface (thin or unevenly drained film stays well above it; bare steel does not
fluoresce). Dark that could hold an indication of the profile's smallest length in every direction (an
opening with a square of that side) is a bare patch; thinner dark (a thread valley, the
shade where two hex flats meet) is not.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from cellctl.config import PartProfile
from cellctl.vision.locate import (
    HEAD_STEP,
    STRIP_COL_STEP,
    STRIP_ROW_STEP,
    HeadLocation,
    Plane,
    Silhouette,
    StripLocation,
)

BARE_LEVEL = 0.35  # of the way from the background to the surface: below it no film glows


def head_bare_patch(loc: HeadLocation, profile: PartProfile) -> tuple[float, float] | None:
    """(width, height) in mm of the largest bare patch on the head, or None."""
    top, bottom = loc.head_rows
    mask = loc.silhouette.mask[top:bottom]
    if not mask.any():
        return None
    outline = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(outline, cv2.convexHull(cv2.findNonZero(mask.astype(np.uint8))), 1)
    dark = (outline > 0) & _dark(loc.plane, loc.silhouette)[top:bottom]
    side = _side(profile.inspection.min_indication_length_mm * profile.optics.frame_px_per_mm / HEAD_STEP)
    mm = profile.optics.frame_px_per_mm / HEAD_STEP
    return _largest(dark, (side, side), mm, mm)


def strip_bare_patch(loc: StripLocation, profile: PartProfile) -> tuple[float, float] | None:
    """(along the axis, around) in mm of the largest bare patch on the shank, or None."""
    dark = _dark(loc.plane, loc.silhouette)[:, loc.datum_px // STRIP_COL_STEP : loc.end_px // STRIP_COL_STEP]
    if dark.size == 0:
        return None
    length = profile.inspection.min_indication_length_mm
    axis_mm = profile.optics.line_px_per_mm / STRIP_COL_STEP
    around_mm = loc.rows / (math.pi * profile.geometry.shank_diameter_mm) / STRIP_ROW_STEP
    kernel = (_side(length * around_mm), _side(length * axis_mm))
    # one turn: the last lines continue into the first
    pad = kernel[0]
    wrapped = np.concatenate((dark[-pad:], dark, dark[:pad]))
    return _largest(wrapped, kernel, axis_mm, around_mm)


def _dark(plane: Plane, sil: Silhouette) -> np.ndarray:
    level = sil.background + BARE_LEVEL * (sil.surface - sil.background)
    return np.asarray(cv2.blur(plane.pixels, (3, 3)) < level)


def _side(px: float) -> int:
    return max(math.ceil(px), 2)


def _largest(dark: np.ndarray, kernel: tuple[int, int], x_per_mm: float, y_per_mm: float) -> tuple[float, float] | None:
    """(x, y) extent in mm of the largest dark region that holds the kernel (rows, cols)."""
    opened = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, np.ones(kernel, np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return stats[best, cv2.CC_STAT_WIDTH] / x_per_mm, stats[best, cv2.CC_STAT_HEIGHT] / y_per_mm
