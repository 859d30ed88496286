"""How sharp a view is: the steepness of the part's silhouette edge against the dark fixture.

A defocused view (a part seated off the focal plane, a lens knocked out of focus, a fogged
window) shows every indication wider and fainter; the student, trained on sharp views, then
scores a crack like clean film, and the out-of-distribution guard on its pooled features does
not notice lost detail (it reads a blurred view as more typical, not less). The silhouette is
the one edge every view has whatever the part carries: under Gaussian blur of sigma px its
steepest slope falls as 1 / (sqrt(2 pi) sigma) of the step from background to part. The
measure is that slope (the steepest 5 % of gradients along the edge, so a shaded stretch does
not count) over the step, per pixel of the plane measured (cellctl.vision.locate.FinePlane).
A sharp step reads about 0.5; blur of 2 camera pixels about 0.3 on the head grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from cellctl.vision.locate import FinePlane, Silhouette

EDGE_BAND_PX = 2  # edge-plane pixels either side of the silhouette's boundary that make up its edge
STEEPEST = 95  # percentile of the edge's gradients taken as its slope
SOBEL_NORM = 8.0  # a 3 x 3 Sobel kernel's weights sum to 8 on either side: slope per pixel


def edge_sharpness(plane: FinePlane, sil: Silhouette) -> float | None:
    """The silhouette edge's steepest slope over the part's contrast, per pixel of the plane
    (None when there is no edge to measure). ``sil`` is the located part's silhouette."""
    contrast = sil.surface - sil.background
    if contrast <= 0:
        return None
    green, mask = plane.pixels, plane.mask
    kernel = np.ones((2 * EDGE_BAND_PX + 1, 2 * EDGE_BAND_PX + 1), np.uint8)
    band = cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)
    if not band.any():
        return None
    # the 3 x 3 Sobel at the edge's pixels only (the image's outermost ring left out): the
    # edge is a few percent of the plane, and a whole-plane gradient of a strip costs more
    # than locating the part
    band[[0, -1], :] = False
    band[:, [0, -1]] = False
    ys, xs = np.nonzero(band)
    if ys.size == 0:
        return None

    def at(dy: int, dx: int) -> np.ndarray:
        return green[ys + dy, xs + dx].astype(np.int32)

    corners = at(1, 1) - at(-1, -1)
    anti = at(-1, 1) - at(1, -1)
    gx = corners + anti + 2 * (at(0, 1) - at(0, -1))
    gy = corners - anti + 2 * (at(1, 0) - at(-1, 0))
    slopes = np.hypot(gx, gy) / SOBEL_NORM
    return float(np.percentile(slopes, STEEPEST)) / contrast
