"""Finding the part in a view: its fluorescent silhouette against the dark fixture.

Under UV behind the BP525 filter the wetted steel glows and the fixture stays dark, so the
part is the largest bright region of the green channel. What is measured there (head width
and height, shank width and tilt in a head frame; the lit span along the axis in the strip)
is checked against the profile's nominal geometry, each camera's pixels per mm and the
fixture's tolerance. A view that shows no part, a part out of place, or a part of another
size is not inspected: the part is RECHECK with the reason (the wrong part on the fixture, or
the wrong profile sent, looks exactly like this).

Measurements run on a reduced green plane (a quarter of the head frame's resolution, an
eighth of the strip's rows): the silhouette is large and smooth, the details do not matter
here, and the full-resolution plane would cost more than the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cellctl.config import PartProfile
from cellctl.drivers import CellError

HEAD_STEP = 4  # head frame pixels per plane pixel (2 from the Bayer G sites, 2 more by area)
STRIP_ROW_STEP = 8  # strip rows per plane row
STRIP_COL_STEP = 2  # strip columns per plane column
FILLET_MM = 1.5  # below the head: the under-head fillet, where forging cracks start
MARGIN_MM = 1.0  # around the head: the silhouette edge itself is inspected


class NotLocated(CellError):
    """No part, or not the profile's part in its place: the view cannot be inspected."""


@dataclass(frozen=True)
class Plane:
    """The green channel of a view, reduced; ``step`` is image pixels per plane pixel (x, y)."""

    pixels: np.ndarray  # uint8
    step_x: int
    step_y: int


def green_sites(data: np.ndarray, pixel_format: str) -> tuple[np.ndarray, int] | None:
    """The green channel as the sensor sampled it and image pixels per its pixel (2 for the
    G sites of a Bayer mosaic, 1 otherwise); None for pixels of no known layout."""
    if pixel_format == "BayerRG8" and data.ndim == 2:
        return data[0::2, 1::2], 2  # RGGB: the G site of each 2 x 2 cell
    if pixel_format == "RGB8" and data.ndim == 3 and data.shape[2] == 3:
        return data[:, :, 1], 1
    if pixel_format == "Mono8" and data.ndim == 2:
        return data, 1
    return None


def green_plane(data: np.ndarray, pixel_format: str, step_x: int, step_y: int) -> Plane:
    """The fluorescence channel at 1/step of the image's resolution (step even)."""
    if data.dtype != np.uint8:
        raise NotLocated(f"expected 8-bit pixels, got {data.dtype}")
    sites = green_sites(data, pixel_format)
    if sites is None:
        raise NotLocated(f"cannot read {pixel_format} pixels of shape {data.shape}")
    g, site = sites
    sx, sy = step_x // site, step_y // site
    rows, cols = g.shape[0] // sy, g.shape[1] // sx
    if rows < 8 or cols < 8:
        raise NotLocated(f"image of {data.shape[1]} x {data.shape[0]} px is too small to find a part in")
    small = cv2.resize(np.ascontiguousarray(g[: rows * sy, : cols * sx]), (cols, rows), interpolation=cv2.INTER_AREA)
    return Plane(small, step_x, step_y)


@dataclass(frozen=True)
class Silhouette:
    mask: np.ndarray  # bool, plane resolution: the part's largest bright component
    threshold: float  # grey level between background and part
    background: float  # median grey level outside the part
    surface: float  # median grey level of the part


def silhouette(plane: Plane, min_contrast: float) -> Silhouette:
    """The largest bright region, if it stands out of the background by ``min_contrast``.

    Otsu's split of the view's histogram, with the brightest 0.5 % of pixels clipped first: a
    small saturated glare spot would otherwise pull the split up to itself and leave the part
    in the dark class.
    """
    blur = cv2.GaussianBlur(plane.pixels, (5, 5), 0)
    clipped = np.minimum(blur, np.uint8(np.percentile(blur, 99.5)))
    threshold, binary = cv2.threshold(clipped, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = binary > 0
    if not bright.any() or bright.all():
        raise NotLocated("no part seen: the view is uniform")
    surface, background = float(np.median(blur[bright])), float(np.median(blur[~bright]))
    if surface - background < min_contrast:
        raise NotLocated(
            f"no part seen: the brightest region is {surface - background:.0f} grey levels over the "
            f"background (a part is at least {min_contrast:g})"
        )
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # specks are not the part
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count < 2:
        raise NotLocated("no part seen: nothing bright larger than a speck")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return Silhouette(labels == best, float(threshold), background, surface)


@dataclass(frozen=True)
class FinePlane:
    """A view's green channel at the resolution fine detail is measured on, with the located
    part's silhouette brought to it: the green sites of a head frame (a 2-pixel grid whatever
    format the frame came in, so a demosaiced file reads as its Bayer original), every pixel
    of a strip."""

    pixels: np.ndarray  # uint8
    mask: np.ndarray  # uint8, 1 on the part
    scale: int  # image pixels per plane pixel


def fine_plane(data: np.ndarray, pixel_format: str, kind: str, sil: Silhouette) -> FinePlane | None:
    """``kind`` "head" or "shank"; None for pixels of no known layout."""
    sites = green_sites(data, pixel_format)
    if sites is None:
        return None
    green, scale = sites
    if kind == "head" and scale == 1:
        green, scale = green[0::2, 1::2], 2
    rows, cols = green.shape[:2]
    mask = cv2.resize(sil.mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST)
    return FinePlane(green, mask, scale)


@dataclass(frozen=True)
class HeadLocation:
    """A located head in frame pixels."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1: head flank plus margin and fillet
    centre: tuple[float, float]  # x, y of the head's centre
    tilt_deg: float
    head_width_mm: float
    head_height_mm: float
    shank_width_mm: float
    silhouette: Silhouette
    plane: Plane
    head_rows: tuple[int, int]  # plane rows of the head: its top, past its last wide row


def locate_head(data: np.ndarray, pixel_format: str, profile: PartProfile) -> HeadLocation:
    """The head in a frame camera image, checked against the profile (NotLocated if not)."""
    g, fx, tol = profile.geometry, profile.fixture, profile.fixture.size_tolerance
    plane = green_plane(data, pixel_format, HEAD_STEP, HEAD_STEP)
    sil = silhouette(plane, profile.guard.min_part_contrast)
    mm = profile.optics.frame_px_per_mm / HEAD_STEP  # plane pixels per mm
    mask = sil.mask
    cols = mask.shape[1]
    lit = np.asarray(mask.any(axis=1), dtype=bool)
    left = np.argmax(mask, axis=1)
    right = cols - 1 - np.argmax(mask[:, ::-1], axis=1)
    width = np.where(lit, right - left + 1, 0)
    top = int(np.argmax(lit))
    if top == 0 or left[lit].min() == 0 or right[lit].max() == cols - 1:
        raise NotLocated("the part runs out of the image (not seated in the fixture, or another part)")
    # the silhouette's principal axis: a tilted part is told as such before its tilt distorts
    # the widths measured row by row
    moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    tilt = math.degrees(0.5 * math.atan2(2.0 * moments["mu11"], moments["mu02"] - moments["mu20"]))
    if abs(tilt) > fx.max_tilt_deg:
        raise NotLocated(f"part tilted {tilt:.1f} deg (tolerance {fx.max_tilt_deg:g} deg)")
    # head rows: from the first row wider than halfway between shank and head flats (the top
    # edge is soft: chamfer, blur) down while they stay that wide
    wide = np.asarray(width >= 0.5 * (g.head_across_flats_mm + g.shank_diameter_mm) * mm, dtype=bool)
    first = top + int(np.argmax(wide[top:]))
    if not wide[first] or first - top > mm:
        raise NotLocated(
            f"not this profile's part: no head seen, the part is at most {width.max() / mm:.1f} mm wide "
            f"(head {g.head_across_flats_mm:g} mm across flats)"
        )
    # the head ends at its last wide row within twice its nominal height: a dark band across
    # it (a shaded edge, a gap in the particle film) does not cut it short
    window = np.flatnonzero(wide[first : first + int(2 * g.head_height_mm * mm) + 2])
    bottom = first + int(window[-1]) + 1
    head_rows = first + np.flatnonzero(wide[first:bottom])
    shank_rows = np.flatnonzero(lit[bottom:])[int(mm) :] + bottom  # skip the fillet
    if shank_rows.size < 8:
        raise NotLocated("no shank seen below the head")
    head_width = float(np.median(width[head_rows])) / mm
    head_height = (bottom - top) / mm
    shank_width = float(np.median(width[shank_rows])) / mm
    centres = 0.5 * (left + right)
    cx = float(np.median(centres[head_rows])) * HEAD_STEP
    cy = 0.5 * (top + bottom) * HEAD_STEP
    across_corners = g.head_across_flats_mm / math.cos(math.pi / 6)
    problems = _out_of_range("head width", head_width, g.head_across_flats_mm * (1 - tol), across_corners * (1 + tol))
    problems += _out_of_range("head height", head_height, g.head_height_mm * (1 - tol), g.head_height_mm * (1 + tol))
    problems += _out_of_range(
        "shank width", shank_width, g.shank_diameter_mm * (1 - tol), g.shank_diameter_mm * (1 + tol)
    )
    if problems:
        raise NotLocated(f"not this profile's part: {'; '.join(problems)}")
    offset = math.hypot(cx - fx.frame_centre_x_px, cy - fx.frame_centre_y_px) / profile.optics.frame_px_per_mm
    if offset > fx.position_tolerance_mm:
        raise NotLocated(f"head {offset:.1f} mm from the fixture position (tolerance {fx.position_tolerance_mm:g} mm)")
    margin = MARGIN_MM * profile.optics.frame_px_per_mm
    x0 = left[head_rows].min() * HEAD_STEP - margin
    x1 = (right[head_rows].max() + 1) * HEAD_STEP + margin
    y0 = top * HEAD_STEP - margin
    y1 = bottom * HEAD_STEP + FILLET_MM * profile.optics.frame_px_per_mm
    box = (max(int(x0), 0), max(int(y0), 0), int(x1), int(y1))
    return HeadLocation(box, (cx, cy), tilt, head_width, head_height, shank_width, sil, plane, (top, bottom))


@dataclass(frozen=True)
class StripLocation:
    """The located part in the strip, in strip pixels (x along the axis)."""

    start_px: int  # first lit column: the head's top
    datum_px: int  # the under-head face
    end_px: int  # past the last lit column: the shank's end
    rows: int
    length_mm: float  # head height plus shank length, as seen
    lit_fraction: float  # of the revolution's rows in which the shank is seen lit
    silhouette: Silhouette
    plane: Plane


def locate_strip(data: np.ndarray, pixel_format: str, profile: PartProfile) -> StripLocation:
    """The part in a line-scan strip, checked against the profile (NotLocated if not)."""
    g, fx, tol = profile.geometry, profile.fixture, profile.fixture.size_tolerance
    lines = profile.line_scan.lines_per_revolution
    if data.ndim < 2 or data.shape[0] != lines:
        # rows are encoder lines: fewer leave part of the turn unseen (and the coverage of what
        # is there would read whole), more or fewer mean another scale around the shank
        raise NotLocated(
            f"the strip has {data.shape[0] if data.ndim else 0} lines, a revolution is {lines} "
            "(line_scan.lines_per_revolution): not one whole turn"
        )
    plane = green_plane(data, pixel_format, STRIP_COL_STEP, STRIP_ROW_STEP)
    sil = silhouette(plane, profile.guard.min_part_contrast)
    mm = profile.optics.line_px_per_mm / STRIP_COL_STEP
    lit_cols = sil.mask.mean(axis=0) >= 0.5
    if not lit_cols.any():
        raise NotLocated("no part seen around the revolution")
    # the longest run of lit columns is the part (a puddle on the fixture is another run)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], lit_cols.astype(np.int8), [0]))))
    runs = edges.reshape(-1, 2)
    c0, c1 = runs[int(np.argmax(runs[:, 1] - runs[:, 0]))]
    cols = lit_cols.size
    if c0 == 0 or c1 == cols:
        raise NotLocated("the part runs out of the strip (not seated in the fixture, or another part)")
    length = (c1 - c0) / mm
    nominal = g.head_height_mm + g.length_mm
    problems = _out_of_range("length", length, nominal * (1 - tol), nominal * (1 + tol))
    if problems:
        raise NotLocated(f"not this profile's part: {'; '.join(problems)} (head and shank)")
    start = int(c0) * STRIP_COL_STEP
    datum = start + round(g.head_height_mm * profile.optics.line_px_per_mm)
    offset = abs(datum - fx.strip_datum_px) / profile.optics.line_px_per_mm
    if offset > fx.position_tolerance_mm:
        raise NotLocated(
            f"part {offset:.1f} mm along the axis from the fixture position (tolerance {fx.position_tolerance_mm:g} mm)"
        )
    # the turn the part was seen over: rows in which most of the shank is lit (a dark thread
    # valley or a dim deposit is part of a seen row; a slipped or unlit part leaves rows dark)
    shank = sil.mask[:, int(datum // STRIP_COL_STEP) : int(c1)]
    lit_fraction = float((shank.mean(axis=1) >= 0.5).mean()) if shank.size else 0.0
    end = int(c1) * STRIP_COL_STEP
    return StripLocation(start, datum, end, data.shape[0], length, lit_fraction, sil, plane)


def _out_of_range(what: str, value: float, low: float, high: float) -> list[str]:
    if low <= value <= high:
        return []
    return [f"{what} {value:.1f} mm, expected {low:.1f}-{high:.1f} mm"]
