"""The POD figure as a PNG, drawn with OpenCV (the cell already ships it; no plotting library).

One panel per fit: the fitted POD curve, its 95 % lower bound (dashed), the hit/miss trials
jittered at 1 and 0, and the a50 / a90 / a90/95 markers, on a logarithmic size axis (the model
is linear in ln a). Panels are tiled into one image, e.g. 2 x 2 for head/shank x
contrast/length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from cellctl.pod.fit import PodFit

Image = NDArray[np.uint8]
Point = tuple[int, int]

PANEL_W, PANEL_H = 800, 560
CAPTION_H = 40  # the grid's one-line caption, when it has one
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 28, 54, 96
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_GRID = (225, 225, 225)
_AXIS = (60, 60, 60)
_CURVE = (180, 90, 20)  # blue
_LOWER = (40, 40, 210)  # red
_A50 = (120, 120, 120)
_HIT = (40, 150, 40)
_MISS = (150, 150, 150)
_RECHECK = (0, 140, 255)  # orange
_JITTER = 0.035  # of the POD axis: trials spread just inside 0 and 1


@dataclass(frozen=True)
class Panel:
    fit: PodFit
    title: str  # e.g. "head: contrast sweep (length 3 mm)"
    xlabel: str  # e.g. "contrast (grey levels over the surface)"
    # per trial of the fit, in its order: a miss that was a RECHECK (drawn apart); () = none
    rechecks: tuple[bool, ...] = ()


def render_panel(panel: Panel, width: int = PANEL_W, height: int = PANEL_H) -> Image:
    """One panel, BGR uint8, ``height`` x ``width``."""
    img = np.full((height, width, 3), 255, np.uint8)
    fit = panel.fit
    _text(img, panel.title, (_LEFT, 30), 0.62, _BLACK, 2)
    x0, x1, y0, y1 = _LEFT, width - _RIGHT, _TOP, height - _BOTTOM
    if fit.size_range is None:
        _frame(img, x0, y0, x1, y1)
        _text(img, "no trials", ((x0 + x1) // 2 - 40, (y0 + y1) // 2), 0.7, _AXIS, 2)
        return img
    lo, hi = fit.size_range
    lo, hi = (lo / 1.5, hi * 1.5) if hi / lo < 1.01 else (lo / 1.12, hi * 1.12)
    lx0, lx1 = math.log(lo), math.log(hi)

    def px(size: float) -> int:
        return round(x0 + (math.log(size) - lx0) / (lx1 - lx0) * (x1 - x0))

    def py(pod: float) -> int:
        return round(y1 - pod * (y1 - y0))

    # grid and ticks
    for tick in _log_ticks(lo, hi):
        cv2.line(img, (px(tick), y0), (px(tick), y1), _GRID, 1)
        label = _number(tick)
        (tw, _), _ = cv2.getTextSize(label, _FONT, 0.45, 1)
        _text(img, label, (px(tick) - tw // 2, y1 + 20), 0.45, _AXIS)
    for i in range(11):
        pod = i / 10
        cv2.line(img, (x0, py(pod)), (x1, py(pod)), _GRID, 1)
        if i % 2 == 0 or i == 9:
            label = f"{pod:.1f}"
            (tw, _), _ = cv2.getTextSize(label, _FONT, 0.45, 1)
            _text(img, label, (x0 - tw - 8, py(pod) + 5), 0.45, _AXIS)
    _dashed(img, [(x0, py(0.9)), (x1, py(0.9))], _A50, 1, 4)
    _frame(img, x0, y0, x1, y1)
    (tw, _), _ = cv2.getTextSize(panel.xlabel, _FONT, 0.52, 1)
    _text(img, panel.xlabel, ((x0 + x1 - tw) // 2, height - 48), 0.52, _BLACK)
    _vertical_text(img, "probability of detection", 18, (y0 + y1) // 2)

    # trials, jittered so that repeated sizes stay visible (fixed seed: the same figure twice)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(0.0, _JITTER, fit.sizes.size)
    recheck = panel.rechecks or (False,) * fit.n
    for size, hit, j, rc in zip(fit.sizes, fit.outcomes, jitter, recheck, strict=True):
        centre = (px(float(size)), py(1.0 - j if hit else j))
        colour = _HIT if hit else _RECHECK if rc else _MISS
        cv2.circle(img, centre, 3, colour, -1 if hit else 1, cv2.LINE_AA)

    legend: list[tuple[str, tuple[int, int, int], str]] = []
    if fit.fitted:
        grid = np.exp(np.linspace(lx0, lx1, 300))
        curve = [(px(s), py(p)) for s, p in zip(grid, fit.pod(grid), strict=True)]
        cv2.polylines(img, [np.array(curve, np.int32)], False, _CURVE, 2, cv2.LINE_AA)
        legend.append(("POD fit (log-logistic)", _CURVE, "line"))
        if len(fit.region):
            lower = [(px(s), py(p)) for s, p in zip(grid, fit.pod_lower(grid), strict=True)]
            _dashed(img, lower, _LOWER, 2, 10)
            legend.append(("95 % lower bound (LR)", _LOWER, "dashed"))
        markers = [("a50", fit.a50, 0.5, _A50), ("a90", fit.a90, 0.9, _CURVE), ("a90/95", fit.a90_95, 0.9, _LOWER)]
        row = 0
        for name, value, level, colour in markers:
            if value is None:
                continue
            _dashed(img, [(px(value), py(level)), (px(value), y1)], colour, 1, 5)
            cv2.circle(img, (px(value), py(level)), 5, colour, 2, cv2.LINE_AA)
            label = f"{name} = {_number(value)}"
            (tw, _), _ = cv2.getTextSize(label, _FONT, 0.5, 1)
            # right of the marker, or left of it near the right edge; stacked so labels never overlap
            tx = px(value) + 8 if px(value) + 8 + tw < x1 else px(value) - 8 - tw
            ty = py(0.35) - 20 * row
            cv2.rectangle(img, (tx - 2, ty - 15), (tx + tw + 2, ty + 4), _WHITE, -1)  # lines pass behind
            _text(img, label, (tx, ty), 0.5, colour, 1)
            row += 1
        missing = [f"{k.replace('_', '/')}: {v}" for k, v in fit.why.items() if k in ("a50", "a90", "a90_95")]
        # top left, under the 0.9 line: a rising curve is still low there
        for i, line in enumerate(missing):
            _text(img, _clip(line, int((x1 - x0) * 0.75), 0.42), (x0 + 10, py(0.84) + 18 * i), 0.42, _AXIS)
    else:
        _text(img, _clip(f"no curve: {fit.reason}", x1 - x0 - 20), (x0 + 12, py(0.6)), 0.5, _LOWER, 1)
        if fit.demonstration is not None:
            demo = fit.demonstration
            line = f"{demo.trials} of {demo.trials} hits at >= {_number(demo.size)}: POD >= {demo.pod_lower:.3f} (95 %)"
            _text(img, _clip(line, x1 - x0 - 20), (x0 + 12, py(0.52)), 0.5, _AXIS, 1)
    legend.append((f"hit ({fit.hits})", _HIT, "dot"))
    rechecks = sum(panel.rechecks)
    legend.append((f"miss ({fit.n - fit.hits - rechecks})", _MISS, "ring"))
    if rechecks:
        legend.append((f"RECHECK ({rechecks})", _RECHECK, "ring"))
    # one row under the axis label: no corner of the plot is free for every curve
    _legend(img, legend, x0, height - 16)
    return img


def render_grid(
    panels: Sequence[Panel], cols: int = 2, width: int = PANEL_W, height: int = PANEL_H, caption: str | None = None
) -> Image:
    """Panels tiled row by row under an optional one-line caption; an empty cell stays white."""
    if not panels:
        raise ValueError("no panels to draw")
    rows = math.ceil(len(panels) / cols)
    top = CAPTION_H if caption else 0
    img = np.full((top + rows * height, cols * width, 3), 255, np.uint8)
    if caption:
        _text(img, _clip(caption, cols * width - 40, 0.6), (20, 27), 0.6, _BLACK, 1)
        img[top - 1, :, :] = 200
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        y = top + r * height
        img[y : y + height, c * width : (c + 1) * width] = render_panel(panel, width, height)
    for c in range(1, cols):  # thin separators so the panels read as separate plots
        img[top:, c * width, :] = 200
    for r in range(1, rows):
        img[top + r * height, :, :] = 200
    return img


def write_png(path: Path, panels: Sequence[Panel], cols: int = 2, caption: str | None = None) -> tuple[int, int]:
    """Write the panels as one PNG; its (width, height). OSError when it cannot be written."""
    img = render_grid(panels, cols, caption=caption)
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    path.write_bytes(data.tobytes())
    return img.shape[1], img.shape[0]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks inside [lo, hi]; every integer mantissa when that gives fewer than 4."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**d for d in decades for m in mantissas if lo <= m * 10.0**d <= hi]
        if len(ticks) >= 4:
            return ticks
    # a range narrower than one step: its two ends
    return [lo * 1.05, hi / 1.05]


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _text(
    img: Image, text: str, org: Point, scale: float, colour: tuple[int, int, int] = _BLACK, thickness: int = 1
) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def _clip(text: str, width_px: int, scale: float = 0.5) -> str:
    """Cut a line with an ellipsis so that it fits ``width_px``."""
    while len(text) > 4 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width_px:
        text = text[:-5] + "..."
    return text


def _vertical_text(img: Image, text: str, x: int, y_centre: int) -> None:
    (tw, th), base = cv2.getTextSize(text, _FONT, 0.52, 1)
    strip = np.full((th + base + 4, tw + 4, 3), 255, np.uint8)
    cv2.putText(strip, text, (2, th + 2), _FONT, 0.52, _BLACK, 1, cv2.LINE_AA)
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    h, w = rotated.shape[:2]
    top = max(0, y_centre - h // 2)
    h = min(h, img.shape[0] - top)
    img[top : top + h, x : x + w] = np.minimum(img[top : top + h, x : x + w], rotated[:h])


def _frame(img: Image, x0: int, y0: int, x1: int, y1: int) -> None:
    cv2.rectangle(img, (x0, y0), (x1, y1), _AXIS, 1)


def _dashed(img: Image, points: Sequence[Point], colour: tuple[int, int, int], thickness: int, dash: int) -> None:
    """A polyline drawn dash on, dash off, by arc length (so the pattern survives curvature)."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 2:
        return
    seg = np.diff(pts, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    total = float(lengths.sum())
    if total == 0:
        return
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    starts = np.arange(0.0, total, 2 * dash)
    for s in starts:
        e = min(s + dash, total)
        along = np.linspace(s, e, max(2, int((e - s) / 2) + 2))
        xy = np.column_stack([np.interp(along, cum, pts[:, 0]), np.interp(along, cum, pts[:, 1])])
        cv2.polylines(img, [np.round(xy).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)


def _legend(img: Image, entries: Sequence[tuple[str, tuple[int, int, int], str]], x: int, y: int) -> None:
    """The legend as one row of (symbol, label) from (x, y), y the text baseline; a symbol is
    "line", "dashed", "dot" (a hit) or "ring" (a miss)."""
    for label, colour, symbol in entries:
        if symbol in ("dot", "ring"):
            cv2.circle(img, (x + 8, y - 4), 4, colour, -1 if symbol == "dot" else 1, cv2.LINE_AA)
            x += 18
        else:
            if symbol == "dashed":
                _dashed(img, [(x, y - 4), (x + 26, y - 4)], colour, 2, 5)
            else:
                cv2.line(img, (x, y - 4), (x + 26, y - 4), colour, 2, cv2.LINE_AA)
            x += 34
        _text(img, label, (x, y), 0.45, _BLACK)
        x += cv2.getTextSize(label, _FONT, 0.45, 1)[0][0] + 22
