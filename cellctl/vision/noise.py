"""Sensor noise where the part is: a view smoothed after the sensor has lost its fine detail.

Every raw pixel carries the sensor's read and shot noise, so the film of particles never
reads perfectly smooth from one pixel to the next. Where it does, the view was smoothed
after the sensor, over the whole view or a patch of it: a camera's noise reduction switched
on, lossy compression on the way, an image filtered or edited before it was judged. The same
smoothing fades a crack's 2-pixel line into the film, and the student scores it clean (a
patch blurred 3 px over a crack PASSed 26 of 40 defective parts), while the silhouette edge
(cellctl.vision.focus) may lie outside the patch, and smoothing along the lines of the strip
alone leaves that edge untouched.

The measure, per block of ``BLOCK`` pixels of the green plane that lies on the part
(cellctl.vision.locate.FinePlane: the green sites of a head frame, every pixel of the strip):
the mean absolute second difference of neighbouring pixels, across and along the lines, the
smaller of the two. Structure on the
part only raises it; for noise of sigma it reads about sigma. The view's figure is the
lowest block's. A defocused lens does not lower it (noise is added after the optics): that is
the focus measure's work.
"""

from __future__ import annotations

import cv2
import numpy as np

from cellctl.vision.locate import FinePlane

BLOCK = 16  # green-plane pixels a side: 1.3 mm on a head frame, 1 mm x 0.2 mm (M8) on the strip
MIN_ON_PART = 0.8  # of a block's pixels on the part, away from its edge, unclipped: else not measured
EDGE_PX = 2  # green-plane pixels inside the silhouette's edge left out (the edge is structure)


def least_noise(plane: FinePlane, box: tuple[int, int, int, int]) -> float | None:
    """The lowest block's noise figure inside ``box`` (x0, y0, x1, y1 in image pixels), or
    None when no block lies on the part."""
    green = plane.pixels
    rows, cols = green.shape[:2]
    mask = cv2.erode(plane.mask, np.ones((2 * EDGE_PX + 1, 2 * EDGE_PX + 1), np.uint8))
    x0, y0, x1, y1 = (v // plane.scale for v in box)
    x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, cols - 1), min(y1, rows - 1)
    if x1 - x0 < BLOCK or y1 - y0 < BLOCK:
        return None
    g = green[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1].astype(np.float32)
    inner = g[1:-1, 1:-1]
    across = np.abs(inner - 0.5 * (g[1:-1, :-2] + g[1:-1, 2:]))
    along = np.abs(inner - 0.5 * (g[:-2, 1:-1] + g[2:, 1:-1]))
    on = (mask[y0:y1, x0:x1] > 0) & (inner > 0) & (inner < 255)
    br, bc = inner.shape[0] // BLOCK, inner.shape[1] // BLOCK

    def per_block(a: np.ndarray) -> np.ndarray:
        return np.asarray(a[: br * BLOCK, : bc * BLOCK].reshape(br, BLOCK, bc, BLOCK).sum(axis=(1, 3)), np.float64)

    count = per_block(on.astype(np.float32))
    measured = count >= MIN_ON_PART * BLOCK * BLOCK
    if not measured.any():
        return None
    figure = np.minimum(per_block(across * on), per_block(along * on)) / np.maximum(count, 1.0)
    return float(figure[measured].min())
