"""Scene renderer: what the BP525-filtered cameras see of a wet-fluorescent MPI part under UV.

The band-pass filter passes the green particle fluorescence only, so the scene is one
intensity channel (8-bit units, float32): a dark background, the fluorescent particle haze on
the wetted steel, thread roots that hold more particles, true indications (sharp, bright,
thin lines and spots over cracks, seams and marks) and harmless deposits (softer, dimmer
blobs and streaks). ``sensor.py`` turns the intensity into the camera's pixel format.

Optics (cell.md section 2): the frame camera sees 101 mm over 2464 px; the line-scan camera
129.6 mm over 2048 px, one line per encoder step, one revolution per strip.

Not modelled: lens distortion, depth of field, motion blur, specular glare, the head top face.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from cellctl.sim.part import Deposit, Indication, SimPart

FRAME_PX_PER_MM = 2464 / 101.0
LINE_PX_PER_MM = 2048 / 129.6
FRAME_SHAPE = (2056, 2464)
DARK_LEVEL = 6.0  # filtered background under UV: almost black
SENSOR_NOISE = 2.5  # read + shot noise, 8-bit units (1 sigma)
STRIP_HEAD_COL = 220  # column of the under-head face in the strip
VISIBLE_COS = 0.3  # an indication this far round the side is still drawn and counted


@dataclass(frozen=True)
class HeadRender:
    image: np.ndarray  # float32, FRAME_SHAPE
    visible: tuple[int, ...]  # indices into part.indications drawn in this view


@dataclass(frozen=True)
class StripRender:
    image: np.ndarray  # float32, rows x width
    points: tuple[np.ndarray, ...]  # per indication: (N, 2) x/y pixel samples along its path


class Renderer:
    """Deterministic for a seed: the same part, angle and gain give the same image."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        rng = np.random.default_rng([seed, 0xC0FFEE])
        # One noise field per sensor, shifted per shot: a fresh field per frame would cost
        # more than the rest of the render for no visible difference.
        self._frame_noise = rng.standard_normal(FRAME_SHAPE, dtype=np.float32) * SENSOR_NOISE
        self._strip_noise: dict[tuple[int, int], np.ndarray] = {}

    # ---------------------------------------------------------------- head (frame camera)
    def head_view(self, part: SimPart, angle_deg: float, gain: float = 1.0) -> HeadRender:
        g = part.geometry
        rng = np.random.default_rng([part.seed, int(angle_deg * 10)])
        s = FRAME_PX_PER_MM
        h, w = FRAME_SHAPE
        r_head, r_shank = g.head_across_flats_mm / 2.0, g.shank_diameter_mm / 2.0
        r_corner = r_head / math.cos(math.pi / 6)
        # Fluorescence is drawn in a box around the part only (10x fewer pixels than the
        # frame); cx, top are in box coordinates.
        box_x0 = int(w / 2.0 - r_corner * s) - 64
        box_y0 = int(h / 2.0 - g.head_height_mm * s / 2.0) - 64
        cx, top = w / 2.0 - box_x0, h / 2.0 - g.head_height_mm * s / 2.0 - box_y0
        fluo = np.zeros((h - box_y0, w - 2 * box_x0), np.float32)

        # hex flank: silhouette from the projected corners, faces split by darker edges
        phase = (part.seed % 60) + 30.0
        corners = [math.radians(phase + 60 * k - angle_deg) for k in range(6)]
        xs = [cx + r_corner * math.sin(a) * s for a in corners]
        x0, x1 = int(min(xs)), int(max(xs))
        y0, y1 = int(top), int(top + g.head_height_mm * s)
        fluo[y0:y1, x0:x1] = part.surface_level * _cylinder_shading(x1 - x0)
        for a, x in zip(corners, xs, strict=True):
            if math.cos(a) > 0.05:
                fluo[y0:y1, max(int(x) - 2, 0) : int(x) + 2] *= 0.7
        # shank under the head, to the bottom of the frame
        sx0, sx1 = int(cx - r_shank * s), int(cx + r_shank * s)
        fluo[y1:, sx0:sx1] = part.surface_level * _cylinder_shading(sx1 - sx0)
        fluo *= self._haze(rng, fluo.shape)

        def project(az_deg: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            radius = np.where(z < g.head_height_mm, r_head, r_shank)
            rel = np.radians(az_deg - angle_deg)
            return cx + radius * np.sin(rel) * s, top + z * s

        for dep in (d for d in part.deposits if d.region == "head"):
            rel = math.radians(dep.azimuth_deg - angle_deg)
            if math.cos(rel) > 0.2:
                x, y = project(np.array(dep.azimuth_deg), np.array(dep.z_mm))
                _add_deposit(fluo, dep, float(x), float(y), math.cos(rel) * s, s, rng)
        visible = []
        for i, ind in enumerate(part.indications):
            rel = math.radians(ind.azimuth_deg - angle_deg)
            if ind.region != "head" or math.cos(rel) <= VISIBLE_COS:
                continue
            radius = r_head if ind.z_mm < g.head_height_mm else r_shank
            u, z = _path_mm(ind)
            pts = np.stack(project(ind.azimuth_deg + np.degrees(u / radius), z), axis=1)
            # dimmer towards the silhouette, where the crack is seen at a grazing angle
            _draw_path(fluo, pts, ind.width_px, ind.brightness * min(1.0, math.cos(rel) / 0.6))
            visible.append(i)
        shift = tuple(rng.integers(0, 512, size=2))
        image = np.roll(self._frame_noise, shift, axis=(0, 1))
        image += DARK_LEVEL
        image[box_y0:, box_x0 : w - box_x0] += fluo * gain
        return HeadRender(image, tuple(visible))

    # ---------------------------------------------------------------- shank (line scan)
    def strip(self, part: SimPart, rows: int, width: int = 2048, gain: float = 1.0) -> StripRender:
        """The shank unwrapped over one revolution: x along the axis, y = turntable angle."""
        g = part.geometry
        rng = np.random.default_rng([part.seed, 7777])
        sx = LINE_PX_PER_MM
        sy = rows / (math.pi * g.shank_diameter_mm)  # lines per mm of circumference
        fluo = np.zeros((rows, width), np.float32)
        head0 = max(int(STRIP_HEAD_COL - g.head_height_mm * sx), 0)
        shank1 = min(int(STRIP_HEAD_COL + g.length_mm * sx), width)
        fluo[:, head0:STRIP_HEAD_COL] = part.surface_level * 0.85
        fluo[:, STRIP_HEAD_COL:shank1] = part.surface_level
        # thread roots hold more particles: a helix that advances one pitch per revolution
        t0 = int(STRIP_HEAD_COL + (g.length_mm - g.thread_length_mm) * sx)
        pitch_px = g.thread_pitch_mm * sx
        cols = np.arange(t0, shank1, dtype=np.float32)
        phase = (cols[None, :] - t0) / pitch_px + np.arange(rows, dtype=np.float32)[:, None] / rows
        fluo[:, t0:shank1] += 24.0 * ((0.5 + 0.5 * np.cos(2 * np.pi * phase)) ** 6)
        fluo *= self._haze(rng, (rows, width))

        def place(az_deg: float, z_mm: float) -> tuple[float, float]:
            return STRIP_HEAD_COL + z_mm * sx, az_deg / 360.0 * rows

        for dep in (d for d in part.deposits if d.region == "shank"):
            x, y = place(dep.azimuth_deg, dep.z_mm)
            for wrap in (-rows, 0, rows):
                _add_deposit(fluo, dep, x, y + wrap, sy, sx, rng, transpose=True)
        points = []
        for ind in part.indications:
            if ind.region != "shank":
                points.append(np.zeros((0, 2), np.float32))
                continue
            u, z = _path_mm(ind)
            x0, y0 = place(ind.azimuth_deg, ind.z_mm)
            pts = np.stack([x0 + (z - ind.z_mm) * sx, y0 + u * sy], axis=1)
            for wrap in (-rows, 0, rows):
                _draw_path(fluo, pts + (0.0, wrap), ind.width_px, ind.brightness)
            dense = _densify(pts)
            dense[:, 1] %= rows
            points.append(dense)
        key = (rows, width)
        if key not in self._strip_noise:
            noise_rng = np.random.default_rng([self._seed, rows, width])
            self._strip_noise[key] = noise_rng.standard_normal(key, dtype=np.float32) * SENSOR_NOISE
        image = np.roll(self._strip_noise[key], tuple(rng.integers(0, 512, size=2)), axis=(0, 1))
        image += DARK_LEVEL
        image += fluo * gain
        return StripRender(image, tuple(points))

    @staticmethod
    def _haze(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Uneven particle coverage: smooth +-10 % variation of the fluorescence."""
        low = rng.uniform(0.9, 1.1, size=(shape[0] // 64 + 2, shape[1] // 64 + 2)).astype(np.float32)
        return cv2.resize(low, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _cylinder_shading(width: int) -> np.ndarray:
    """Brightness across a round surface seen from the side (less light back at the edges)."""
    x = np.linspace(-0.98, 0.98, max(width, 1), dtype=np.float32)
    return 0.7 + 0.3 * np.sqrt(1.0 - x * x)


def _path_mm(ind: Indication) -> tuple[np.ndarray, np.ndarray]:
    """Points of the indication path relative to its centre: (u along circumference, z)."""
    t = np.linspace(-ind.length_mm / 2, ind.length_mm / 2, len(ind.jitter))
    a = math.radians(ind.angle_deg)
    jitter = np.asarray(ind.jitter)
    u = t * math.cos(a) - jitter * math.sin(a)
    z = ind.z_mm + t * math.sin(a) + jitter * math.cos(a)
    return u, z


def _draw_path(canvas: np.ndarray, pts: np.ndarray, width: int, brightness: float) -> None:
    """Anti-aliased polyline added to ``canvas`` (drawn on an 8-bit patch: OpenCV AA is 8-bit)."""
    pad = width + 3
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + pad
    h, w = canvas.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shifted = np.round((pts - (x0, y0)) * 16).astype(np.int32)  # 4 fractional bits
    cv2.polylines(patch, [shifted], False, 255, thickness=width, lineType=cv2.LINE_AA, shift=4)
    sub = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] += sub * (brightness / 255.0)


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


def _densify(pts: np.ndarray, step_px: float = 1.0) -> np.ndarray:
    out = [pts[:1]]
    for a, b in itertools.pairwise(pts):
        n = max(int(np.hypot(*(b - a)) / step_px), 1)
        t = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)[1:, None]
        out.append(a + (b - a) * t)
    return np.concatenate(out).astype(np.float32)
