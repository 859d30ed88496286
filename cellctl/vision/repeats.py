"""Views that repeat what another view, or another line, already showed.

Each head frame is shot at its own turntable position and each strip line at its own encoder
edge, so no two of them see the same surface. When they do, part of the surface was never
shot: the turntable stalled or the part slipped in its chuck (the frames or the lines show
one position again), or the acquisition delivered a buffer twice (a grabber that re-queues a
stale buffer, an encoder that stops while the camera free-runs on a line). The student scores
each repeat clean, so a crack on the faces never shot is PASSed "all views clean". Such a part
is RECHECK with the views named.

Three measures, each against what a sensor's own noise can do:
- two consecutive head frames whose difference over the head is no more than noise: its
  smooth part (what structure would make) over its fine part (what noise makes) under
  ``SAME_HEAD``. White noise alone reads 0.44-0.49 whatever the part's brightness (two shots
  of one position, the sensor's noise drawn afresh; an identical frame reads 0); frames 60
  or 90 degrees apart read at least 0.88 (15 PLANT parts, M8; SEED 1.28), and none of the
  2,100 consecutive pairs of 700 PLANT held-out parts (M8, M12) read under the limit;
- a strip whose shank, smoothed around the turn, differs from itself half a turn on by less
  than ``SAME_TURN`` of the contrast: one line seen all the way round (a stall: at most
  0.012; a turning part at least 0.112, SEED and PLANT);
- a run of ``MAX_REPEATED_LINES`` or more strip lines equal to the line before within
  ``SAME_LINE`` grey levels on average: sensor noise alone makes neighbouring lines differ by
  about 3 grey levels, so only a repeated buffer line is that close.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import cv2
import numpy as np

from cellctl.vision.locate import STRIP_COL_STEP, FinePlane, HeadLocation, StripLocation

SAME_HEAD = 0.7  # two head frames' difference: its smooth part over its fine part, at most
SAME_TURN = 0.05  # mean |difference| of the smoothed shank and itself half a turn on, over the contrast
SAME_LINE = 0.5  # grey levels: mean |difference| of a strip line and the one before, at most
MAX_REPEATED_LINES = 4  # lines in a row that equal the one before: a repeated buffer line
SMOOTH = (5, 5)  # plane pixels: what sensor noise is averaged over before views are compared


def repeated_heads(frames: Sequence[tuple[str, HeadLocation | None]]) -> list[tuple[str, str, float]]:
    """(earlier view, later view, difference) of consecutive head frames that show one
    position. ``frames``: (view, its location or None if not located), in turntable order."""
    found = []
    for (name_a, a), (name_b, b) in itertools.pairwise(frames):
        if a is None or b is None:
            continue
        difference = _head_difference(a, b)
        if difference < SAME_HEAD:
            found.append((name_a, name_b, difference))
    return found


def _head_difference(a: HeadLocation, b: HeadLocation) -> float:
    """Mean |smoothed difference| over mean |what smoothing took from it|, on the head and
    fillet of either frame (0 for one frame twice, inf where nothing can be compared)."""
    if a.plane.pixels.shape != b.plane.pixels.shape:
        return float("inf")  # frames of different sizes: not one frame twice
    region = a.silhouette.mask | b.silhouette.mask
    step = a.plane.step_x
    x0, y0, x1, y1 = (v // step for v in a.box)
    inside = np.zeros_like(region)
    inside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    region &= inside
    if not region.any():
        return float("inf")
    difference = a.plane.pixels.astype(np.float32) - b.plane.pixels.astype(np.float32)
    smooth = cv2.GaussianBlur(difference, SMOOTH, 0)
    fine = float(np.abs(difference - smooth)[region].mean())
    coarse = float(np.abs(smooth)[region].mean())
    return coarse / fine if fine > 0 else (0.0 if coarse == 0 else float("inf"))


def turn_difference(loc: StripLocation) -> float:
    """The shank against itself half a turn on, smoothed, over the part's contrast: near 0
    when every line shows the same place of the part."""
    plane = loc.plane.pixels[:, loc.datum_px // STRIP_COL_STEP : loc.end_px // STRIP_COL_STEP]
    contrast = loc.silhouette.surface - loc.silhouette.background
    if plane.size == 0 or contrast <= 0:
        return float("inf")
    smooth = cv2.GaussianBlur(plane.astype(np.float32), SMOOTH, 0)
    return float(np.abs(smooth - np.roll(smooth, smooth.shape[0] // 2, axis=0)).mean()) / contrast


def repeated_lines(plane: FinePlane, loc: StripLocation) -> tuple[int, int] | None:
    """(first line, count) of the longest run of strip lines each equal to the line before
    (over the shank's columns), when it reaches ``MAX_REPEATED_LINES``; else None.

    Lines two apart are compared, so a Bayer strip's lines of the same colour meet (its plane
    holds the green sites, a line in two: neighbouring rows); clipped pixels (0 or 255 in
    both lines) say nothing and are left out, and a line with less than half its pixels left
    is no evidence either way."""
    green = plane.pixels[:, loc.datum_px // plane.scale : loc.end_px // plane.scale]
    apart = max(2 // plane.scale, 1)  # plane rows two lines apart
    if green.shape[0] <= apart or green.shape[1] == 0:
        return None
    a, b = green[apart:].astype(np.int16), green[:-apart].astype(np.int16)
    clipped = ((a == 0) & (b == 0)) | ((a == 255) & (b == 255))
    kept = (~clipped).sum(axis=1)
    diff = (np.abs(a - b) * ~clipped).sum(axis=1) / np.maximum(kept, 1)
    same = (diff <= SAME_LINE) & (kept >= green.shape[1] // 2)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], same.astype(np.int8), [0]))))
    if edges.size == 0:
        return None
    runs = edges.reshape(-1, 2)
    longest = runs[int(np.argmax(runs[:, 1] - runs[:, 0]))]
    # a run of k equal pairs of rows d apart is k + d rows
    count = (int(longest[1] - longest[0]) + apart) * plane.scale
    return (int(longest[0]) * plane.scale, count) if count >= MAX_REPEATED_LINES else None
