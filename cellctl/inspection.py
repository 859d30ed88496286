"""One part's inspection from its pixels: locate, tile, guard, score, decide.

The daemon (on its inference thread), ``cellctl eval`` and ``cellctl pod`` call the same
functions here, so what is measured offline is what runs on the line. Blocking; never raises
for anything the pixels bring: a view that cannot be judged makes the part RECHECK with the
reason, and the reason names the view.

Per part: every head frame and the strip are located (the part's silhouette checked against
the profile's geometry and fixture) and checked for what would hide an indication from the
student (a blurred or smoothed view, a bare patch, a view or strip lines that repeat another:
cellctl.vision focus, noise, bare, repeats), tiled over the located surface at the profile's scale,
each tile checked against the input invariants, all tiles scored in one batch, each score
kept only if the tile is in the model's distribution (``ood_score`` under the threshold the
model carries), and the coverage of head and shank compared with the profile's requirement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from cellctl.config import GuardSettings, ResolvedProfile, ViewSpec
from cellctl.decision import Decision, ViewResult, decide
from cellctl.fault import Fault, Step
from cellctl.vision.bare import head_bare_patch, strip_bare_patch
from cellctl.vision.focus import edge_sharpness
from cellctl.vision.locate import (
    FinePlane,
    HeadLocation,
    NotLocated,
    Silhouette,
    StripLocation,
    fine_plane,
    locate_head,
    locate_strip,
)
from cellctl.vision.noise import least_noise
from cellctl.vision.preprocess import InvalidImage, model_input, tile_rgb
from cellctl.vision.repeats import SAME_TURN, repeated_heads, repeated_lines, turn_difference
from cellctl.vision.tiles import head_coverage, head_tiles, strip_coverage, strip_tiles

SATURATED = 255
BLACK = 2  # grey levels at or below this are black: no light reaches the sensor there
MIN_PART_FRACTION = 0.02  # of a tile's pixels: less and the tile shows no part to judge
OOD_PREFIX = "out of distribution"  # how a view's problem starts when the guard's distance says so


class Pixels(Protocol):
    """A view as the camera delivered it (cellctl.drivers.camera.Frame is one)."""

    @property
    def data(self) -> np.ndarray: ...

    @property
    def pixel_format(self) -> str: ...


@dataclass(frozen=True)
class Frame:
    data: np.ndarray
    pixel_format: str


class Model(Protocol):
    path: Path
    sha256: str
    ood_threshold: float | None  # None: the model carries no guard, nothing it scores can PASS

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(defect probability (N,), ood distance (N,) or None) of an N x 3 x S x S batch."""
        ...


class InvalidOutput(Exception):
    """The model answered something that is not one probability per view."""


@dataclass(frozen=True)
class Inspection:
    views: tuple[ViewResult, ...]
    coverage: dict[str, float]  # "head": the worst head frame; "shank": the strip
    problems: tuple[str, ...]  # part-level: a view not located, too little covered
    not_located: tuple[str, ...]  # views ("head@90", "strip") in which the part was not found as the profile's
    short_of_coverage: tuple[str, ...]  # views whose tiles cover less than the profile requires
    sharpness: dict[str, float | None]  # located view -> its silhouette edge's sharpness (None: not measurable)
    noise: dict[str, float | None]  # located view -> the sensor noise of its smoothest block on the part
    out_of_focus: tuple[str, ...]  # views less sharp, or smoother, than the profile's guard allows
    repeated: tuple[str, ...]  # views that repeat another view or their own lines: surface never shot
    decision: Decision
    fault: Fault | None  # the model failed (the decision is then RECHECK, or REJECT on a view it did score)
    timings_ms: dict[str, float]  # "prepare": locate, tile, guard; "infer": the model


@dataclass(frozen=True)
class _Tile:
    spec: ViewSpec
    pixels: Pixels
    silhouette: Silhouette


@dataclass
class _Plan:
    """What is to be scored, and what already stands against a PASS."""

    tiles: list[_Tile] = field(default_factory=list)
    coverage: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    not_located: list[str] = field(default_factory=list)
    short_of_coverage: list[str] = field(default_factory=list)
    sharpness: dict[str, float | None] = field(default_factory=dict)
    noise: dict[str, float | None] = field(default_factory=dict)
    out_of_focus: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    heads: list[tuple[str, HeadLocation | None]] = field(default_factory=list)  # head frames in order, located or not
    started_s: float = field(default_factory=time.monotonic)


def inspect_part(heads: Sequence[Pixels], strip: Pixels, rp: ResolvedProfile, model: Model) -> Inspection:
    """The whole part: every head frame (in the profile's head_positions_deg order) and the strip."""
    plan = _Plan()
    angles = rp.profile.head_positions_deg
    if len(heads) != len(angles):
        plan.problems.append(f"{len(heads)} head frames for {len(angles)} head positions")
    for i, (frame, angle) in enumerate(zip(heads, angles, strict=False)):
        _plan_head(plan, frame, i, angle, rp)
    _plan_strip(plan, strip, rp)
    _require_turned(plan)
    return _judge(plan, rp, model)


def inspect_image(frame: Pixels, kind: str, rp: ResolvedProfile, model: Model, angle_deg: float = 0.0) -> Inspection:
    """One head frame (``kind`` "head") or one strip ("shank") alone, decided the same way."""
    plan = _Plan()
    if kind == "head":
        _plan_head(plan, frame, 0, angle_deg, rp)
    else:
        _plan_strip(plan, frame, rp)
    return _judge(plan, rp, model)


def image_tiles(frame: Pixels, kind: str, rp: ResolvedProfile) -> tuple[list[ViewSpec], list[str]]:
    """The tiles the daemon would score in one image, and what stood in the way (not located,
    not covered): for tools that need the model's inputs without a verdict (guard
    calibration, training data)."""
    plan = _Plan()
    if kind == "head":
        _plan_head(plan, frame, 0, 0.0, rp)
    else:
        _plan_strip(plan, frame, rp)
    return [t.spec for t in plan.tiles], plan.problems


def model_inputs(frame: Pixels, tiles: Sequence[ViewSpec], rp: ResolvedProfile) -> np.ndarray:
    """N x 3 x S x S: the tiles of one image as the model's batch."""
    pre = rp.profile.preprocess
    batch = np.zeros((len(tiles), 3, pre.input_size_px, pre.input_size_px), np.float32)
    for i, spec in enumerate(tiles):
        batch[i] = model_input(tile_rgb(frame.data, frame.pixel_format, spec), pre)
    return batch


def _plan_head(plan: _Plan, frame: Pixels, source: int, angle: float, rp: ResolvedProfile) -> None:
    name = f"head@{angle:g}"
    try:
        loc = locate_head(frame.data, frame.pixel_format, rp.profile)
    except NotLocated as exc:
        plan.problems.append(f"{name}: {exc}")
        plan.not_located.append(name)
        plan.coverage["head"] = 0.0
        plan.heads.append((name, None))
        return
    shape = (int(frame.data.shape[0]), int(frame.data.shape[1]))
    tiles = head_tiles(loc, source, angle, rp.profile, shape)
    covered = head_coverage(loc, tiles)
    plan.coverage["head"] = min(plan.coverage.get("head", 1.0), covered)
    _require_coverage(plan, name, covered, rp)
    _require_film(plan, name, head_bare_patch(loc, rp.profile), "wide", "high")
    _require_detail(plan, name, frame, "head", loc.silhouette, loc.box, rp.profile.guard)
    plan.heads.append((name, loc))
    plan.tiles += [_Tile(t, frame, loc.silhouette) for t in tiles]


def _plan_strip(plan: _Plan, frame: Pixels, rp: ResolvedProfile) -> None:
    try:
        loc = locate_strip(frame.data, frame.pixel_format, rp.profile)
    except NotLocated as exc:
        plan.problems.append(f"strip: {exc}")
        plan.not_located.append("strip")
        plan.coverage["shank"] = 0.0
        return
    tiles = strip_tiles(loc, rp.profile, int(frame.data.shape[1]))
    covered = strip_coverage(loc, tiles)
    plan.coverage["shank"] = covered
    _require_coverage(plan, "strip", covered, rp)
    _require_film(plan, "strip", strip_bare_patch(loc, rp.profile), "along the axis", "around")
    _require_length(plan, loc, rp)
    box = (loc.datum_px, 0, loc.end_px, loc.rows)
    plane = _require_detail(plan, "strip", frame, "shank", loc.silhouette, box, rp.profile.guard)
    _require_lines(plan, plane, loc)
    plan.tiles += [_Tile(t, frame, loc.silhouette) for t in tiles]


def _flag(views: list[str], name: str) -> None:
    """A view is listed once however many of its checks it fails (each is in the problems)."""
    if name not in views:
        views.append(name)


def _require_coverage(plan: _Plan, name: str, covered: float, rp: ResolvedProfile) -> None:
    required = rp.profile.inspection.required_coverage
    if covered < required:
        _flag(plan.short_of_coverage, name)
        plan.problems.append(f"{name}: tiles cover {covered:.1%} of the surface, below the required {required:.1%}")


def _require_film(plan: _Plan, name: str, patch: tuple[float, float] | None, x: str, y: str) -> None:
    """A bare patch (cellctl.vision.bare) is surface the tiles cover and nobody inspected."""
    if patch is not None:
        _flag(plan.short_of_coverage, name)
        plan.problems.append(
            f"{name}: bare patch of {patch[0]:.1f} mm {x} x {patch[1]:.1f} mm {y} (no particle film: not inspected)"
        )


def _require_length(plan: _Plan, loc: StripLocation, rp: ResolvedProfile) -> None:
    """The strip shows the part to its end: a band round the shank's end that no film lights
    makes the part look shorter (within the size tolerance that tells another part), and its
    surface was never inspected."""
    g, fixture = rp.profile.geometry, rp.profile.fixture
    nominal = g.head_height_mm + g.length_mm
    least = nominal * (1.0 - fixture.length_tolerance)
    if loc.length_mm < least:
        _flag(plan.short_of_coverage, "strip")
        plan.problems.append(
            f"strip: the part is seen {loc.length_mm:.1f} mm long, at least {least:.1f} mm of its {nominal:g} mm "
            "(fixture.length_tolerance): its end is not lit, not inspected"
        )


def _require_lines(plan: _Plan, plane: FinePlane | None, loc: StripLocation) -> None:
    """Every line of the strip shows its own place of the turn (cellctl.vision.repeats)."""
    turn = turn_difference(loc)
    if turn < SAME_TURN:
        _flag(plan.repeated, "strip")
        plan.problems.append(
            f"strip: one place of the part all the way round (difference {turn:.3f}, at least {SAME_TURN:g}): "
            "the part did not turn"
        )
        return
    run = repeated_lines(plane, loc) if plane is not None else None
    if run is not None:
        _flag(plan.repeated, "strip")
        first, count = run
        plan.problems.append(f"strip: lines {first}-{first + count - 1} repeat one line (the encoder or camera)")


def _require_turned(plan: _Plan) -> None:
    """Each head frame shows its own position (cellctl.vision.repeats)."""
    for earlier, later, difference in repeated_heads(plan.heads):
        _flag(plan.repeated, later)
        plan.problems.append(
            f"{later}: the same view as {earlier} (difference {difference:.3f}): the part did not turn, "
            "or one frame was delivered twice"
        )


def _require_detail(
    plan: _Plan,
    name: str,
    frame: Pixels,
    kind: str,
    sil: Silhouette,
    box: tuple[int, int, int, int],
    guard: GuardSettings,
) -> FinePlane | None:
    """The view shows fine detail: its silhouette edge is sharp (cellctl.vision.focus) and
    the sensor's noise is still on every block of the part (cellctl.vision.noise). Returns
    the fine plane it measured on (None for pixels of no known layout), for the strip's lines."""
    plane = fine_plane(frame.data, frame.pixel_format, kind, sil)
    sharpness = edge_sharpness(plane, sil) if plane is not None else None
    plan.sharpness[name] = sharpness
    floor = guard.min_head_sharpness if kind == "head" else guard.min_strip_sharpness
    if sharpness is None:
        _flag(plan.out_of_focus, name)
        plan.problems.append(f"{name}: no silhouette edge to check the focus on")
    elif sharpness < floor:
        _flag(plan.out_of_focus, name)
        field = "min_head_sharpness" if kind == "head" else "min_strip_sharpness"
        plan.problems.append(
            f"{name}: out of focus (edge sharpness {sharpness:.2f}, at least {floor:g}: guard.{field})"
        )
    noise = least_noise(plane, box) if plane is not None else None
    plan.noise[name] = noise
    if noise is not None and noise < guard.min_noise:
        _flag(plan.out_of_focus, name)
        plan.problems.append(
            f"{name}: smoothed after the sensor (noise {noise:.2f} in a block of the part, at least "
            f"{guard.min_noise:g}: guard.min_noise)"
        )
    return plane


def _judge(plan: _Plan, rp: ResolvedProfile, model: Model) -> Inspection:
    guard = rp.profile.guard
    inputs: list[np.ndarray] = []
    invariant: list[str | None] = []
    for tile in plan.tiles:
        try:
            rgb = tile_rgb(tile.pixels.data, tile.pixels.pixel_format, tile.spec)
            invariant.append(view_problem(rgb[:, :, 1], tile.silhouette, guard))
            inputs.append(model_input(rgb, rp.profile.preprocess))
        except InvalidImage as exc:
            invariant.append(str(exc))
            size = rp.profile.preprocess.input_size_px
            inputs.append(np.zeros((3, size, size), np.float32))
    scores: list[float | None] = [None] * len(plan.tiles)
    oods: list[float | None] = [None] * len(plan.tiles)
    fault: Fault | None = None
    t1 = time.monotonic()
    if inputs:
        try:
            probs, ood = checked_outputs(model.infer(np.stack(inputs)), len(inputs))
            scores = [float(p) for p in probs]
            oods = [float(d) for d in ood] if ood is not None else oods
        except Exception as exc:  # noqa: BLE001 - onnxruntime errors, a broken model, an invalid output
            fault = Fault.of(Step.INFER, exc)
    views = tuple(
        ViewResult(t.spec.name, t.spec.kind, s, d, problem or _ood_problem(d, model.ood_threshold))
        for t, s, d, problem in zip(plan.tiles, scores, oods, invariant, strict=True)
    )
    settings = rp.profile.decision
    decision = decide(views, settings.threshold, fault, plan.problems, settings.recheck_threshold)
    timings = {"prepare": (t1 - plan.started_s) * 1e3, "infer": (time.monotonic() - t1) * 1e3}
    return Inspection(
        views,
        dict(plan.coverage),
        tuple(plan.problems),
        tuple(plan.not_located),
        tuple(plan.short_of_coverage),
        dict(plan.sharpness),
        dict(plan.noise),
        tuple(plan.out_of_focus),
        tuple(plan.repeated),
        decision,
        fault,
        timings,
    )


def _ood_problem(distance: float | None, threshold: float | None) -> str | None:
    if threshold is None:
        return "the model carries no out-of-distribution guard"
    if distance is None or not math.isfinite(distance):
        return "no out-of-distribution score"
    if distance > threshold:
        return f"{OOD_PREFIX} (ood {distance:.1f} > {threshold:.1f})"
    return None


def view_problem(green: np.ndarray, sil: Silhouette, guard: GuardSettings) -> str | None:
    """The first input invariant a tile breaks (green channel, 8-bit), or None."""
    n = green.size
    saturated = int(np.count_nonzero(green >= SATURATED)) / n
    if saturated > guard.max_saturated_fraction:
        return f"{saturated:.1%} of pixels saturated (at most {guard.max_saturated_fraction:.1%})"
    black = int(np.count_nonzero(green <= BLACK)) / n
    if black > guard.max_black_fraction:
        return f"{black:.0%} of pixels black (at most {guard.max_black_fraction:.0%})"
    part = green > sil.threshold
    if np.count_nonzero(part) < MIN_PART_FRACTION * n:
        return "the tile shows no part"
    level = float(np.median(green[part]))
    if not guard.min_surface_level <= level <= guard.max_surface_level:
        return (
            f"part surface at {level:.0f} grey levels, outside {guard.min_surface_level:g}-"
            f"{guard.max_surface_level:g} (light, particle bath or exposure)"
        )
    background = float(np.median(green[~part])) if not part.all() else sil.background
    if level - background < guard.min_part_contrast:
        return f"part only {level - background:.0f} grey levels over the background"
    return None


def checked_outputs(raw: object, views: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's outputs as one finite probability in [0, 1] per view (InvalidOutput if
    not) and one ood distance per view (non-finite kept: that view is then not trusted)."""
    if not isinstance(raw, tuple) or len(raw) != 2:
        raise InvalidOutput("model returned no (probabilities, ood) pair")
    probs, ood = raw
    out = np.asarray(probs)
    if out.size != views or out.ndim > 2:
        raise InvalidOutput(f"model output shape {out.shape} for {views} views")
    if not np.issubdtype(out.dtype, np.floating):
        raise InvalidOutput(f"model output of type {out.dtype}, not floating point")
    scores = out.astype(np.float64).reshape(views)
    if not np.isfinite(scores).all():
        raise InvalidOutput(f"non-finite model output in {int((~np.isfinite(scores)).sum())} of {views} views")
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise InvalidOutput(f"model output {scores.min():.3g}..{scores.max():.3g} outside [0, 1]")
    if ood is None:
        return scores, None
    distances = np.asarray(ood)
    if distances.size != views:
        raise InvalidOutput(f"ood output shape {distances.shape} for {views} views")
    return scores, distances.astype(np.float64).reshape(views)
