"""Scene renderer: what the BP525-filtered cameras see of a wet-fluorescent MPI part under UV.

The band-pass filter passes the green particle fluorescence only, so the scene is one
intensity channel (8-bit units, float32): the fixture behind the part (dark, or raised and
uneven by fluorescent residue, with stray specks and puddles), the fluorescent particle film
on the wetted steel (uneven coverage, grain), particle build-up at the geometry (hex corners
and the flank's top edge, the under-head fillet, thread roots), harmless deposits, glare,
and indications (thin particle lines over cracks, seams and marks). ``sensor.py`` turns the
intensity into the camera's pixel format. What varies per part, and within which ranges, is
``part.look``, drawn from a preset of sim/conditions.py.

Contrast: an indication is drawn so that, at camera gain 1, the median over its path of
(pixel - the same pixel without the indication) is its ``contrast``, after focus blur and
lamp dimming (so the figure is what the image shows, as an inspector would measure it). In
a head frame it falls off towards the silhouette, where the crack is seen at a grazing
angle: the drawn contrast per view is in ``HeadRender.contrast``.

Optics (cell.md section 2): the frame camera sees 101 mm over 2464 px; the line-scan camera
129.6 mm over 2048 px, one line per encoder step, one revolution per strip. The part's pose
(offset, magnification, tilt) is the same for its 4 head frames and its strip; in the strip
the tilt of the turning axis shows as an axial wobble over the revolution.

Cost: the part is drawn in a box around it (the frame camera's box is a tenth of its
pixels); sensor noise and particle grain are fields computed once per renderer and shifted.

Not modelled: lens distortion, perspective (the head's far edge), motion blur, out-of-plane
tilt, the head top face, the thread's serrated silhouette, magnetic writing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from cellctl.sim.conditions import DARK_LEVEL, Look
from cellctl.sim.part import Deposit, Indication, SimPart, indication_strokes

__all__ = [
    "DARK_LEVEL",
    "FRAME_PX_PER_MM",
    "FRAME_SHAPE",
    "HeadRender",
    "LINE_PX_PER_MM",
    "Renderer",
    "STRIP_HEAD_COL",
    "StripRender",
    "VISIBLE_COS",
    "head_paths",
]

FRAME_PX_PER_MM = 2464 / 101.0
LINE_PX_PER_MM = 2048 / 129.6
FRAME_SHAPE = (2056, 2464)
SENSOR_NOISE = 2.5  # read + shot noise, 8-bit units (1 sigma)
STRIP_HEAD_COL = 220  # column of the under-head face in the strip (nominal seating)
VISIBLE_COS = 0.3  # an indication this far round the side is still drawn and counted
FACE_ON_COS = 0.6  # nearer the silhouette than this, a head indication is seen dimmer
BOX_PAD = 64  # px round the part in the drawing box: blur, deposits and glare spill over
GRAIN_SIDE = 1024  # the grain field is tiled: its period is far beyond any feature


@dataclass(frozen=True)
class HeadRender:
    image: np.ndarray  # float32, FRAME_SHAPE
    visible: tuple[int, ...]  # indices into part.indications drawn in this view
    # per indication of the part: (N, 2) x/y frame pixels along its drawn path (~1 px apart),
    # empty if not drawn in this view
    paths: tuple[np.ndarray, ...]
    visibility: tuple[float, ...]  # per indication: cos of its centre's angle to the view
    contrast: tuple[float, ...]  # per indication: the contrast drawn in this view (0: not drawn)
    part_box: tuple[int, int, int, int]  # x0, y0, x1, y1: the part's silhouette, clipped to the frame


@dataclass(frozen=True)
class StripRender:
    image: np.ndarray  # float32, rows x width
    points: tuple[np.ndarray, ...]  # per indication: (N, 2) x/y pixel samples along its path
    contrast: tuple[float, ...] = ()  # per indication: the contrast drawn (0: not drawn)
    part_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0 (head top), y0, x1 (shank end), y1
    datum_px: float = float(STRIP_HEAD_COL)  # column of the under-head face in this strip


# ------------------------------------------------------------------------- head geometry
@dataclass(frozen=True)
class _HeadLayout:
    """Where a part is drawn in its box and how the box maps to the frame (same every angle)."""

    s: float  # px per mm at this part's magnification
    width: int  # box columns
    height: int  # box rows
    cx: float  # box column of the axis
    top: float  # box row of the head's top
    m: np.ndarray  # 2 x 3: box -> frame pixels
    translate_only: bool  # m is an integer shift: paste, do not resample
    shank_end: int  # box row where the drawn shank ends


def _head_layout(part: SimPart) -> _HeadLayout:
    g, look = part.geometry, part.look
    s = FRAME_PX_PER_MM * look.scale
    h, w = FRAME_SHAPE
    r_corner = g.head_across_flats_mm / 2.0 / math.cos(math.pi / 6)
    cx = float(math.ceil(r_corner * s) + BOX_PAD)
    hy = float(math.ceil(g.head_height_mm * s / 2.0) + BOX_PAD)  # head centre: a whole row
    top = hy - g.head_height_mm * s / 2.0
    fx = w / 2.0 + look.shift_x_mm * FRAME_PX_PER_MM
    fy = h / 2.0 + look.shift_z_mm * FRAME_PX_PER_MM
    below = min((g.head_height_mm / 2.0 + g.length_mm) * s, h - fy + BOX_PAD)  # no rows past the frame
    height = int(hy + below) + BOX_PAD
    shank_end = min(int(top + (g.head_height_mm + g.length_mm) * s), height)
    a = -math.radians(look.tilt_deg)  # positive tilt: the shank's lower end to the right
    c, sn = math.cos(a), math.sin(a)
    if a == 0.0:
        fx, fy = round(fx), round(fy)
    m = np.array([[c, -sn, fx - (c * cx - sn * hy)], [sn, c, fy - (sn * cx + c * hy)]], np.float64)
    return _HeadLayout(s, int(2 * cx), height, cx, top, m, a == 0.0, shank_end)


def _to_frame(lay: _HeadLayout, pts: np.ndarray) -> np.ndarray:
    return (pts @ lay.m[:, :2].T + lay.m[:, 2]).astype(np.float32)


def _surface_z(ind: Indication | Deposit, part: SimPart) -> float:
    """z from the head's top for either region."""
    return ind.z_mm if ind.region == "head" else part.geometry.head_height_mm + ind.z_mm


def _radius(part: SimPart, z: np.ndarray) -> np.ndarray:
    g = part.geometry
    return np.where(z < g.head_height_mm, g.head_across_flats_mm / 2.0, g.shank_diameter_mm / 2.0)


@dataclass(frozen=True)
class _Drawn:
    runs: list[np.ndarray]  # polylines in target pixels
    cos: float
    contrast: float


def _head_strokes(part: SimPart, lay: _HeadLayout, angle_deg: float) -> list[_Drawn]:
    """Per indication: its visible polylines in frame pixels, the view cos, the drawn contrast."""
    h, w = FRAME_SHAPE
    out = []
    for ind in part.indications:
        cos = math.cos(math.radians(ind.azimuth_deg - angle_deg))
        if cos <= VISIBLE_COS:
            out.append(_Drawn([], cos, 0.0))
            continue
        z_c = _surface_z(ind, part)
        runs = []
        for stroke in indication_strokes(ind):
            z = z_c + stroke[:, 1]
            radius = _radius(part, z)
            rel = np.radians(ind.azimuth_deg - angle_deg) + stroke[:, 0] / radius
            box = np.stack([lay.cx + radius * np.sin(rel) * lay.s, lay.top + z * lay.s], axis=1)
            frame = _to_frame(lay, box)
            inside = (frame[:, 0] >= 0) & (frame[:, 0] < w) & (frame[:, 1] >= 0) & (frame[:, 1] < h)
            runs.extend(_runs(frame, (np.cos(rel) > 0.05) & inside))  # not round the back, not off the frame
        out.append(_Drawn(runs, cos, ind.contrast * min(1.0, cos / FACE_ON_COS) if runs else 0.0))
    return out


def head_paths(part: SimPart, angle_deg: float) -> tuple[tuple[np.ndarray, ...], tuple[float, ...], tuple[float, ...]]:
    """(paths, visibility, contrast) of every indication in the head frame at this angle,
    exactly as ``Renderer.head_view`` draws them, without rendering pixels."""
    drawn = _head_strokes(part, _head_layout(part), angle_deg)
    return (
        tuple(_densify_runs(d.runs) for d in drawn),
        tuple(d.cos for d in drawn),
        tuple(d.contrast for d in drawn),
    )


def _runs(pts: np.ndarray, ok: np.ndarray) -> list[np.ndarray]:
    """The stretches of a polyline where ``ok`` holds (at least 2 points each)."""
    out, start = [], None
    for i, good in enumerate([*ok.tolist(), False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            if i - start >= 2:
                out.append(pts[start:i])
            start = None
    return out


# ---------------------------------------------------------------------------- renderer
class Renderer:
    """Deterministic for a seed: the same part, angle and gain give the same image."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        rng = np.random.default_rng([seed, 0xC0FFEE])
        # One noise field per sensor, shifted per shot: a fresh field per frame would cost
        # more than the rest of the render for no visible difference.
        self._frame_noise = rng.standard_normal(FRAME_SHAPE, dtype=np.float32) * SENSOR_NOISE
        self._strip_noise: dict[tuple[int, int], np.ndarray] = {}
        self._grain: np.ndarray | None = None
        # the fixture behind the part, per part and camera: the 4 head shots share it
        self._background: dict[tuple[int, Look, str, int, int], tuple[np.ndarray | None]] = {}

    # ---------------------------------------------------------------- head (frame camera)
    def head_view(self, part: SimPart, angle_deg: float, gain: float = 1.0) -> HeadRender:
        g, look = part.geometry, part.look
        lay = _head_layout(part)
        rng = np.random.default_rng([part.seed, int(angle_deg * 10)])
        s, cx, top = lay.s, lay.cx, lay.top
        r_head, r_shank = g.head_across_flats_mm / 2.0, g.shank_diameter_mm / 2.0
        r_corner = r_head / math.cos(math.pi / 6)
        fluo = np.zeros((lay.height, lay.width), np.float32)

        # hex flank: silhouette from the projected corners, faces split at the corners
        phase = (part.seed % 60) + 30.0
        corners = [math.radians(phase + 60 * k - angle_deg) for k in range(6)]
        xs = [cx + r_corner * math.sin(a) * s for a in corners]
        x0, x1 = int(min(xs)), int(max(xs))
        y0, y1 = round(top), round(top + g.head_height_mm * s)
        fluo[y0:y1, x0:x1] = part.surface_level * _cylinder_shading(x1 - x0)
        front = [(a, x) for a, x in zip(corners, xs, strict=True) if math.cos(a) > 0.05]
        for _, x in front:
            fluo[y0:y1, max(int(x) - 2, 0) : int(x) + 2] *= look.corner_shade
        # shank under the head, to its end or the bottom of the box
        sx0, sx1 = round(cx - r_shank * s), round(cx + r_shank * s)
        y_end = lay.shank_end
        fluo[y1:y_end, sx0:sx1] = part.surface_level * _cylinder_shading(sx1 - sx0)
        silhouette = (fluo > 0).astype(np.float32)

        # particle build-up where the geometry leaks flux (non-relevant indications)
        if look.hex_edge > 0:
            along = _smooth_1d(rng, y1 - y0, 0.4, 1.3)
            for a, x in front:
                lo, hi = max(int(x) - 5, 0), int(x) + 6
                across = np.exp(-0.5 * ((np.arange(lo, hi) - x) / 1.2) ** 2).astype(np.float32)
                fluo[y0:y1, lo:hi] += look.hex_edge * math.sqrt(math.cos(a)) * along[:, None] * across[None, :]
            band = np.exp(-0.5 * ((np.arange(y0, y0 + 6) - y0 - 1.0) / 1.5) ** 2).astype(np.float32)
            fluo[y0 : y0 + 6, x0:x1] += look.hex_edge * rng.uniform(0.3, 1.0) * band[:, None]
        if look.fillet > 0:
            sigma = max(look.fillet_mm * s / 2.5, 1.0)
            centre = y1 + look.fillet_mm * s / 2.0
            rows = np.arange(y1, min(int(centre + 4 * sigma) + 1, y_end))
            band = np.exp(-0.5 * ((rows - centre) / sigma) ** 2).astype(np.float32)
            shade = _cylinder_shading(sx1 - sx0) * _smooth_1d(rng, sx1 - sx0, 0.6, 1.2)
            if rows.size:
                fluo[rows[0] : rows[-1] + 1, sx0:sx1] += look.fillet * band[:, None] * shade[None, :]
        t0 = int(top + (g.head_height_mm + g.length_mm - g.thread_length_mm) * s)
        if t0 < y_end and look.thread_root > 0:
            rows = np.arange(t0, y_end, dtype=np.float32)
            xn = np.linspace(-0.98, 0.98, sx1 - sx0, dtype=np.float32)
            # the helix seen from the side: half a pitch of lead across the visible half turn
            ph = (rows[:, None] - t0) / (g.thread_pitch_mm * s) + np.arcsin(xn)[None, :] / (2 * np.pi)
            roots = (0.5 + 0.5 * np.cos(2 * np.pi * ph)) ** look.thread_sharpness
            fluo[t0:y_end, sx0:sx1] += look.thread_root * roots * _cylinder_shading(sx1 - sx0)[None, :]

        for dep in part.deposits:
            rel = math.radians(dep.azimuth_deg - angle_deg)
            if math.cos(rel) > 0.2:
                z = _surface_z(dep, part)
                radius = r_head if z < g.head_height_mm else r_shank
                x, y = cx + radius * math.sin(rel) * s, top + z * s
                _add_deposit(fluo, dep, x, y, math.cos(rel) * s, s, rng)
        fluo *= _coverage(rng, fluo.shape, look)
        if look.grain > 0:
            fluo *= 1.0 + look.grain * self._grain_patch(rng, fluo.shape)
        fluo *= silhouette  # build-up and deposits stop at the silhouette
        if look.glare > 0:
            z = min(look.glare_z_mm, (y_end - top) / s)
            half = r_head if z < g.head_height_mm else r_shank
            _add_glare(fluo, silhouette, cx + look.glare_x * half * s, top + z * s, look, s, s, look.glare)
        fluo *= look.lamp

        # to the frame: the pose, then defocus
        region, fluo, alpha = _place(lay, fluo, silhouette)
        if look.blur_head_px > 0.3:
            fluo = cv2.GaussianBlur(fluo, (0, 0), look.blur_head_px)
            alpha = cv2.GaussianBlur(alpha, (0, 0), look.blur_head_px)
        rx0, ry0, _, _ = region
        drawn = _head_strokes(part, lay, angle_deg)
        for ind, d in zip(part.indications, drawn, strict=True):
            if d.runs:
                local = [r - np.array((rx0, ry0), np.float32) for r in d.runs]
                _draw_indication(fluo, local, ind.width_px, d.contrast, look.blur_head_px)

        shift = tuple(rng.integers(0, 512, size=2))
        image = np.roll(self._frame_noise, shift, axis=(0, 1))
        image += DARK_LEVEL
        _compose(image, region, fluo, alpha, self._fixture(part, "head", FRAME_SHAPE, FRAME_PX_PER_MM), gain)
        return HeadRender(
            image,
            tuple(i for i, d in enumerate(drawn) if d.runs),
            tuple(_densify_runs(d.runs) for d in drawn),
            tuple(d.cos for d in drawn),
            tuple(d.contrast for d in drawn),
            _head_box(lay, x0, x1, y0, y1, sx0, sx1, y_end),
        )

    # ---------------------------------------------------------------- shank (line scan)
    def strip(self, part: SimPart, rows: int, width: int = 2048, gain: float = 1.0) -> StripRender:
        """The part unwrapped over one revolution: x along the axis, y = turntable angle."""
        g, look = part.geometry, part.look
        rng = np.random.default_rng([part.seed, 7777])
        sx = LINE_PX_PER_MM * look.scale
        datum = STRIP_HEAD_COL + look.shift_z_mm * LINE_PX_PER_MM
        head0, end = datum - g.head_height_mm * sx, datum + g.length_mm * sx
        c0, c1 = max(int(head0) - BOX_PAD, 0), min(int(end) + BOX_PAD + 1, width)
        bw = max(c1 - c0, 1)
        fluo = np.zeros((rows, bw), np.float32)

        def col(x: float) -> int:
            return min(max(round(x - c0), 0), bw)

        h0, d0, e0 = col(head0), col(datum), col(end)
        fluo[:, h0:d0] = part.surface_level * 0.85
        fluo[:, d0:e0] = part.surface_level
        silhouette = (fluo > 0).astype(np.float32)
        # thread roots hold more particles: a helix that advances one pitch per revolution
        t0 = col(datum + (g.length_mm - g.thread_length_mm) * sx)
        if t0 < e0 and look.thread_root > 0:
            cols = np.arange(t0, e0, dtype=np.float32)
            ph = (cols[None, :] - t0) / (g.thread_pitch_mm * sx) + np.arange(rows, dtype=np.float32)[:, None] / rows
            fluo[:, t0:e0] += look.thread_root * ((0.5 + 0.5 * np.cos(2 * np.pi * ph)) ** look.thread_sharpness)
        if look.hex_edge > 0 and d0 > h0:
            # each hex corner passes the line once per turn: 6 lines across the head columns
            per_mm = rows / (math.pi * g.head_across_flats_mm)
            sigma = max(0.12 * per_mm, 1.0)
            row = np.arange(rows, dtype=np.float32)[:, None]
            lines = np.zeros((rows, 1), np.float32)
            for k in range(6):
                yc = ((part.seed % 60) + 30.0 + 60 * k) / 360.0 * rows
                dy = (row - yc + rows / 2) % rows - rows / 2
                lines += rng.uniform(0.5, 1.0) * np.exp(-0.5 * (dy / sigma) ** 2)
            fluo[:, h0:d0] += look.hex_edge * lines
            edge = np.exp(-0.5 * ((np.arange(h0, min(h0 + 6, d0)) - h0 - 1.0) / 1.5) ** 2).astype(np.float32)
            fluo[:, h0 : h0 + edge.size] += look.hex_edge * rng.uniform(0.3, 1.0) * edge[None, :]
        if look.fillet > 0:
            sigma = max(look.fillet_mm * sx / 2.5, 0.8)
            centre = d0 + look.fillet_mm * sx / 2.0
            span = np.arange(d0, min(int(centre + 4 * sigma) + 1, e0))
            band = np.exp(-0.5 * ((span - centre) / sigma) ** 2).astype(np.float32)
            fluo[:, span[0] : span[-1] + 1] += look.fillet * band[None, :] * _smooth_1d(rng, rows, 0.6, 1.2)[:, None]

        def place(az_deg: float, z_mm: float) -> tuple[float, float]:
            return datum + (z_mm - g.head_height_mm) * sx - c0, az_deg / 360.0 * rows

        for dep in part.deposits:
            z = _surface_z(dep, part)
            radius = g.head_across_flats_mm / 2 if z < g.head_height_mm else g.shank_diameter_mm / 2
            x, y = place(dep.azimuth_deg, z)
            for wrap in (-rows, 0, rows):
                _add_deposit(fluo, dep, x, y + wrap, rows / (2 * math.pi * radius), sx, rng, transpose=True)
        fluo *= _coverage(rng, fluo.shape, look)
        if look.grain > 0:
            fluo *= 1.0 + look.grain * self._grain_patch(rng, fluo.shape)
        fluo *= silhouette
        if look.glare > 0:
            # the line camera sees the same surface line all turn, from further round than the
            # frame camera: a weaker, broader band along the axis, in every row
            xg = datum + (min(look.glare_z_mm, g.head_height_mm + g.length_mm) - g.head_height_mm) * sx - c0
            prof = np.exp(-0.5 * ((np.arange(bw) - xg) / (2.0 * look.glare_length_mm * sx)) ** 2).astype(np.float32)
            fluo += 0.5 * look.glare * prof[None, :] * silhouette
        fluo *= look.lamp

        wobble = look.wobble_mm * sx
        if wobble >= 0.05:
            fluo, silhouette = _wobble(fluo, silhouette, wobble, look.wobble_phase_deg)
        if look.blur_strip_px > 0.3:
            fluo = cv2.GaussianBlur(fluo, (0, 0), look.blur_strip_px)
            silhouette = cv2.GaussianBlur(silhouette, (0, 0), look.blur_strip_px)

        points, contrast = [], []
        for ind in part.indications:
            runs = []
            z_c = _surface_z(ind, part)
            for stroke in indication_strokes(ind):
                zs = z_c + stroke[:, 1]
                az = ind.azimuth_deg + np.degrees(stroke[:, 0] / _radius(part, zs))
                px = datum + (zs - g.head_height_mm) * sx - c0
                py = az / 360.0 * rows
                if wobble >= 0.05:
                    px = px + wobble * np.sin(2 * np.pi * py / rows + math.radians(look.wobble_phase_deg))
                runs.extend(_runs(np.stack([px, py], axis=1).astype(np.float32), (px >= 0) & (px < bw)))
            if not runs:
                points.append(np.zeros((0, 2), np.float32))
                contrast.append(0.0)
                continue
            for wrap in (-rows, 0, rows):
                _draw_indication(
                    fluo,
                    [r + np.array((0.0, wrap), np.float32) for r in runs],
                    ind.width_px,
                    ind.contrast,
                    look.blur_strip_px,
                )
            dense = _densify_runs(runs)
            dense[:, 0] += c0
            dense[:, 1] %= rows
            points.append(dense)
            contrast.append(ind.contrast)

        key = (rows, width)
        if key not in self._strip_noise:
            noise_rng = np.random.default_rng([self._seed, rows, width])
            self._strip_noise[key] = noise_rng.standard_normal(key, dtype=np.float32) * SENSOR_NOISE
        image = np.roll(self._strip_noise[key], tuple(rng.integers(0, 512, size=2)), axis=(0, 1))
        image += DARK_LEVEL
        bg = self._fixture(part, "strip", (rows, width), LINE_PX_PER_MM)
        _compose(image, (c0, 0, c1, rows), fluo[:, : c1 - c0], silhouette[:, : c1 - c0], bg, gain)
        return StripRender(
            image,
            tuple(points),
            tuple(contrast),
            (max(int(head0), 0), 0, min(math.ceil(end), width), rows),
            datum,
        )

    # ---------------------------------------------------------------- shared fields
    def _grain_patch(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Unit-std particle grain (correlated over about a pixel), a random window of a
        tiled field."""
        if self._grain is None:
            field = np.random.default_rng([self._seed, 0x6A41]).standard_normal((GRAIN_SIDE, GRAIN_SIDE))
            wrapped = np.pad(field.astype(np.float32), 4, mode="wrap")  # periodic: no seam when tiled
            field = cv2.GaussianBlur(wrapped, (0, 0), 0.7)[4:-4, 4:-4]
            self._grain = (field / field.std()).astype(np.float32)
        oy, ox = (int(v) for v in rng.integers(0, GRAIN_SIDE, size=2))
        ys = (np.arange(shape[0]) + oy) % GRAIN_SIDE
        xs = (np.arange(shape[1]) + ox) % GRAIN_SIDE
        return self._grain[np.ix_(ys, xs)]

    def _fixture(self, part: SimPart, camera: str, shape: tuple[int, int], px_per_mm: float) -> np.ndarray | None:
        """Fluorescence of the fixture behind the part (above the dark level), or None."""
        look = part.look
        key = (part.seed, look, camera, *shape)
        hit = self._background.get(key)  # renders run in camera threads: one lookup, no check-then-get
        if hit is not None:
            return hit[0]
        stream = 0xF1 if camera == "head" else 0xF2
        bg = _fixture_field(np.random.default_rng([part.seed, stream]), shape, look, px_per_mm)
        if len(self._background) > 8:  # a few parts' worth: the 4 head shots of one part reuse it
            self._background.clear()
        self._background[key] = (bg,)
        return bg


def _fixture_field(rng: np.random.Generator, shape: tuple[int, int], look: Look, px_per_mm: float) -> np.ndarray | None:
    level = look.background - DARK_LEVEL
    if level <= 0 and look.specks == 0 and look.puddles == 0:
        return None
    h, w = shape
    low = rng.uniform(1 - look.background_unevenness, 1 + look.background_unevenness, size=(6, 8))
    bg = cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) * max(level, 0.0)
    for _ in range(look.puddles):
        sigma = look.puddle_size_mm * px_per_mm * rng.uniform(0.5, 1.0)
        _add_blob(bg, rng.uniform(0, w), rng.uniform(0, h), sigma, sigma * rng.uniform(0.5, 1.0), look.puddle_level)
    for _ in range(look.specks):
        sigma = rng.uniform(0.6, 1.5)
        _add_blob(bg, rng.uniform(0, w), rng.uniform(0, h), sigma, sigma, look.speck_level * rng.uniform(0.3, 1.0))
    bg *= look.lamp
    return bg


def _add_blob(canvas: np.ndarray, x: float, y: float, sx: float, sy: float, level: float) -> None:
    h, w = canvas.shape
    x0, x1 = max(int(x - 3.5 * sx), 0), min(int(x + 3.5 * sx) + 1, w)
    y0, y1 = max(int(y - 3.5 * sy), 0), min(int(y + 3.5 * sy) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - x) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - y) / sy) ** 2)
    canvas[y0:y1, x0:x1] += level * gy[:, None] * gx[None, :]


def _compose(
    image: np.ndarray,
    region: tuple[int, int, int, int],
    fluo: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray | None,
    gain: float,
) -> None:
    """The part over the fixture: the part hides the fixture's fluorescence behind it."""
    x0, y0, x1, y1 = region
    if background is not None:
        image += background * gain
        fluo = fluo - background[y0:y1, x0:x1] * alpha
    image[y0:y1, x0:x1] += fluo * gain


def _place(
    lay: _HeadLayout, fluo: np.ndarray, alpha: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The drawing box moved to its pose in the frame: (region x0, y0, x1, y1, fluo, alpha)."""
    h, w = FRAME_SHAPE
    corners = np.array([[0, 0], [lay.width, 0], [0, lay.height], [lay.width, lay.height]], np.float64)
    frame = corners @ lay.m[:, :2].T + lay.m[:, 2]
    x0, y0 = (max(int(v), 0) for v in np.floor(frame.min(axis=0)))
    x1, y1 = min(math.ceil(frame[:, 0].max()), w), min(math.ceil(frame[:, 1].max()), h)
    if lay.translate_only:
        tx, ty = int(lay.m[0, 2]), int(lay.m[1, 2])
        return (
            (x0, y0, x1, y1),
            fluo[y0 - ty : y1 - ty, x0 - tx : x1 - tx].copy(),
            alpha[y0 - ty : y1 - ty, x0 - tx : x1 - tx].copy(),
        )
    m = lay.m.copy()
    m[:, 2] -= (x0, y0)
    both = cv2.warpAffine(np.dstack([fluo, alpha]), m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    return (x0, y0, x1, y1), np.ascontiguousarray(both[..., 0]), np.ascontiguousarray(both[..., 1])


def _head_box(
    lay: _HeadLayout, x0: int, x1: int, y0: int, y1: int, sx0: int, sx1: int, y_end: int
) -> tuple[int, int, int, int]:
    pts = np.array(
        [[x0, y0], [x1, y0], [x0, y1], [x1, y1], [sx0, y1], [sx1, y1], [sx0, y_end], [sx1, y_end]], np.float64
    )
    frame = pts @ lay.m[:, :2].T + lay.m[:, 2]
    h, w = FRAME_SHAPE
    lo, hi = frame.min(axis=0), frame.max(axis=0)
    return max(int(lo[0]), 0), max(int(lo[1]), 0), min(math.ceil(hi[0]), w), min(math.ceil(hi[1]), h)


def _wobble(fluo: np.ndarray, alpha: np.ndarray, amplitude: float, phase_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Shift each strip row along the axis by amplitude * sin(turn angle + phase)."""
    rows, cols = fluo.shape
    shift = amplitude * np.sin(2 * np.pi * np.arange(rows, dtype=np.float32) / rows + math.radians(phase_deg))
    map_x = np.arange(cols, dtype=np.float32)[None, :] - shift[:, None].astype(np.float32)
    map_y = np.broadcast_to(np.arange(rows, dtype=np.float32)[:, None], (rows, cols))
    both = cv2.remap(np.dstack([fluo, alpha]), map_x, np.ascontiguousarray(map_y), cv2.INTER_LINEAR)
    return np.ascontiguousarray(both[..., 0]), np.ascontiguousarray(both[..., 1])


def _coverage(rng: np.random.Generator, shape: tuple[int, ...], look: Look) -> np.ndarray:
    """Uneven particle coverage: a smooth +-``look.coverage`` variation of the fluorescence."""
    cell = max(look.coverage_cell_px, 8.0)
    ny, nx = int(shape[0] // cell) + 2, int(shape[1] // cell) + 2
    low = rng.uniform(1 - look.coverage, 1 + look.coverage, size=(ny, nx)).astype(np.float32)
    return cv2.resize(low, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _smooth_1d(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """A slowly varying factor in [lo, hi] over n samples (build-up is never uniform)."""
    knots = rng.uniform(lo, hi, size=(1, max(n // 40, 1) + 2)).astype(np.float32)
    return cv2.resize(knots, (max(n, 1), 1), interpolation=cv2.INTER_LINEAR)[0]


def _add_glare(
    canvas: np.ndarray, mask: np.ndarray, x: float, y: float, look: Look, px_u: float, px_z: float, level: float
) -> None:
    """A broad specular highlight on the part (fixed to camera and lamp, so the same place in
    every head shot)."""
    h, w = canvas.shape
    sx, sy = look.glare_width_mm * px_u, look.glare_length_mm * px_z
    x0, x1 = max(int(x - 3.5 * sx), 0), min(int(x + 3.5 * sx) + 1, w)
    y0, y1 = max(int(y - 3.5 * sy), 0), min(int(y + 3.5 * sy) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - x) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - y) / sy) ** 2)
    canvas[y0:y1, x0:x1] += level * gy[:, None] * gx[None, :] * mask[y0:y1, x0:x1]


def _cylinder_shading(width: int) -> np.ndarray:
    """Brightness across a round surface seen from the side (less light back at the edges)."""
    x = np.linspace(-0.98, 0.98, max(width, 1), dtype=np.float32)
    return 0.7 + 0.3 * np.sqrt(1.0 - x * x)


def _draw_indication(canvas: np.ndarray, runs: list[np.ndarray], width: int, contrast: float, blur: float) -> None:
    """Anti-aliased polylines, defocused like the rest of the view, scaled so the median over
    the path is ``contrast`` (drawn on an 8-bit patch: OpenCV AA is 8-bit)."""
    pts = np.concatenate(runs)
    pad = width + 3 + math.ceil(3 * blur)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + pad
    h, w = canvas.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shifted = [np.round((r - (x0, y0)) * 16).astype(np.int32) for r in runs]  # 4 fractional bits
    cv2.polylines(patch, shifted, False, 255, thickness=width, lineType=cv2.LINE_AA, shift=4)
    f = patch.astype(np.float32) * (1.0 / 255.0)
    if blur > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    on = np.round(_densify_runs(runs) - (x0, y0)).astype(int)
    level = float(np.median(f[on[:, 1], on[:, 0]]))
    if level < 0.02:
        return
    sub = f[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    canvas[cy0:cy1, cx0:cx1] += sub * (contrast / level)


def _add_deposit(
    canvas: np.ndarray,
    dep: Deposit,
    x: float,
    y: float,
    px_per_mm_u: float,
    px_per_mm_z: float,
    rng: np.random.Generator,
    transpose: bool = False,
) -> None:
    """A soft anisotropic Gaussian: surface covariance (mm) mapped to pixels.

    In head views u (circumference) runs along x; in the strip (``transpose``) along y.
    """
    a = math.radians(dep.angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    cov_mm = rot @ np.diag([dep.sigma_along_mm**2, dep.sigma_across_mm**2]) @ rot.T
    scale = np.diag([px_per_mm_u, px_per_mm_z])
    cov = scale @ cov_mm @ scale.T
    if transpose:
        cov = cov[::-1, ::-1]
    ext_x, ext_y = 3.5 * math.sqrt(cov[0, 0]), 3.5 * math.sqrt(cov[1, 1])
    h, w = canvas.shape
    x0, x1 = max(int(x - ext_x), 0), min(int(x + ext_x) + 1, w)
    y0, y1 = max(int(y - ext_y), 0), min(int(y + ext_y) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    inv = np.linalg.inv(cov + np.eye(2) * 0.25)
    gx = np.arange(x0, x1, dtype=np.float32) - x
    gy = np.arange(y0, y1, dtype=np.float32)[:, None] - y
    q = inv[0, 0] * gx * gx + 2 * inv[0, 1] * gx * gy + inv[1, 1] * gy * gy
    grain = 0.8 + 0.4 * rng.random(q.shape, dtype=np.float32)  # particles, not a smooth film
    canvas[y0:y1, x0:x1] += dep.brightness * np.exp(-0.5 * q) * grain


def _densify_runs(runs: list[np.ndarray]) -> np.ndarray:
    if not runs:
        return np.zeros((0, 2), np.float32)
    return np.concatenate([_densify(r) for r in runs]).astype(np.float32)


def _densify(pts: np.ndarray, step_px: float = 1.0) -> np.ndarray:
    out = [pts[:1]]
    for a, b in itertools.pairwise(pts):
        n = max(int(np.hypot(*(b - a)) / step_px), 1)
        t = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)[1:, None]
        out.append(a + (b - a) * t)
    return np.concatenate(out).astype(np.float32)
