"""How sharp a view is: the steepness of the part's silhouette edge against the dark fixture.

A defocused view (a part seated off the focal plane, a lens knocked out of focus, a fogged
window) shows every indication wider and fainter; the student, trained on sharp views, then
scores a crack like clean film, and the out-of-distribution guard on its pooled features does
not notice lost detail (it reads a blurred view as more typical, not less). The silhouette is
the one edge every view has whatever the part carries: under Gaussian blur of sigma px its
steepest slope falls as 1 / (sqrt(2 pi) sigma) of the step from background to part. The
measure is that slope (the steepest 5 % of gradients along the edge, so a shaded stretch does
not count) over the step, per pixel of the plane measured: the green sites of a head frame (a
2-pixel grid, whatever format the frame came in, so a demosaiced file reads as its Bayer
original), every pixel of the strip. A sharp step reads about 0.5; blur of 2 camera pixels
about 0.3 on the head grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from cellctl.vision.locate import Silhouette

EDGE_BAND_PX = 2  # edge-plane pixels either side of the silhouette's boundary that make up its edge
STEEPEST = 95  # percentile of the edge's gradients taken as its slope
SOBEL_NORM = 8.0  # a 3 x 3 Sobel kernel's weights sum to 8 on either side: slope per pixel


def edge_plane(data: np.ndarray, pixel_format: str, kind: str) -> np.ndarray | None:
    """The green plane the edge is measured on, or None for pixels of no known layout."""
    if pixel_format == "BayerRG8" and data.ndim == 2:
        return data[0::2, 1::2]
    if pixel_format == "RGB8" and data.ndim == 3 and data.shape[2] == 3:
        green = data[:, :, 1]
    elif pixel_format == "Mono8" and data.ndim == 2:
        green = data
    else:
        return None
    return green[0::2, 1::2] if kind == "head" else green


def edge_sharpness(data: np.ndarray, pixel_format: str, kind: str, sil: Silhouette) -> float | None:
    """The silhouette edge's steepest slope over the part's contrast, per pixel of the edge
    plane (None when there is no edge to measure, or the pixels are of no known layout).
    ``sil`` is the located part's silhouette, at the locating plane's reduced resolution."""
    green = edge_plane(data, pixel_format, kind)
    contrast = sil.surface - sil.background
    if green is None or contrast <= 0:
        return None
    rows, cols = green.shape[:2]
    mask = cv2.resize(sil.mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST)
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
