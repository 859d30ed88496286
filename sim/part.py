"""A simulated fastener: its indications, harmless particle deposits and how it was seated and lit.

Positions are on the part surface, so every view of the same part agrees:
``azimuth_deg`` around the axis, ``z_mm`` from the top of the head (head region) or from
under the head along the shank (shank region).

An indication is relevant when it is at least the profile's minimum length AND contrast
(cell.md section 7: the profile says the smallest indication it must find); a part is
defective when it carries at least one. Smaller ones are drawn as well: they are what POD
and the separately reported indications are about.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from cellctl.config import SimGeometry
from cellctl.sim.conditions import DEFAULT, Conditions, Look, log_uniform, sample_look, uniform

Region = Literal["head", "shank"]
IndicationKind = Literal["crack", "seam", "mark"]
SHAPES = ("line", "curved", "branched", "seam", "cluster")
MARK_MM = 0.8  # shorter than this a line reads as a mark, not a crack (kind only, not relevance)
FLANK_MARGIN_MM = 0.3  # keep head indications off the flank's top and bottom edges
FILLET_SPAN_MM = 0.8  # the under-head fillet zone, below the bearing face


@dataclass(frozen=True)
class Indication:
    """A particle line over a discontinuity: crack, seam or mark.

    The main path runs ``length_mm`` through the centre at ``angle_deg`` (0 = along the
    circumference, 90 = along the axis), wiggled across by ``jitter`` (mm, evenly along it)
    and bowed by ``bend_mm``. ``strokes`` are further polylines in the indication's own
    frame (mm along the main path, mm across it, flattened): branches, or the dashes of a
    cluster (whose main path is not drawn; its length is the cluster's extent, as acceptance
    standards count aligned indications with small gaps as one).
    """

    kind: IndicationKind
    region: Region
    azimuth_deg: float
    z_mm: float
    length_mm: float
    angle_deg: float
    width_px: int
    contrast: float  # grey levels over the local surface, seen face-on (scene.py)
    jitter: tuple[float, ...]
    shape: str = "line"
    bend_mm: float = 0.0
    strokes: tuple[tuple[float, ...], ...] = ()

    def relevant(self, min_length_mm: float, min_contrast: float) -> bool:
        return self.length_mm >= min_length_mm and self.contrast >= min_contrast


def indication_strokes(ind: Indication) -> list[np.ndarray]:
    """Polylines of an indication as (N, 2) offsets from its centre: (u along the
    circumference, z along the axis), mm."""
    local: list[np.ndarray] = []
    if ind.shape != "cluster" and ind.jitter:
        t = np.linspace(-ind.length_mm / 2, ind.length_mm / 2, len(ind.jitter))
        across = np.asarray(ind.jitter, np.float64)
        if ind.bend_mm:
            across = across + ind.bend_mm * (1.0 - (2.0 * t / max(ind.length_mm, 1e-6)) ** 2)
        local.append(np.stack([t, across], axis=1))
    local.extend(np.asarray(s, np.float64).reshape(-1, 2) for s in ind.strokes)
    a = math.radians(ind.angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # (t, p) -> (u, z)
    return [pts @ rot for pts in local if len(pts) >= 2]


@dataclass(frozen=True)
class Deposit:
    """Harmless particle build-up: a soft blob or streak that can look like a defect."""

    region: Region
    azimuth_deg: float
    z_mm: float
    sigma_along_mm: float
    sigma_across_mm: float
    angle_deg: float
    brightness: float


@dataclass(frozen=True)
class SimPart:
    part_id: str
    geometry: SimGeometry
    surface_level: float  # fluorescent background of the wetted surface, 8-bit units
    indications: tuple[Indication, ...]
    deposits: tuple[Deposit, ...]
    seed: int = 0
    notes: dict[str, str] = field(default_factory=dict)
    look: Look = field(default_factory=Look)
    # the profile minimum the part was drawn against: what ``defective`` means for it
    min_length_mm: float = 1.0
    min_contrast: float = 30.0

    def relevant(self, min_length_mm: float | None = None, min_contrast: float | None = None) -> tuple[bool, ...]:
        """Per indication: at least the minimum length and contrast (default: the part's own)."""
        length = self.min_length_mm if min_length_mm is None else min_length_mm
        contrast = self.min_contrast if min_contrast is None else min_contrast
        return tuple(i.relevant(length, contrast) for i in self.indications)

    @property
    def defective(self) -> bool:
        return any(self.relevant())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; ``from_json`` gives an equal part (the fixture channel to a child daemon)."""
        data = asdict(self)
        data["geometry"] = self.geometry.model_dump()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimPart:
        return cls(
            part_id=str(data["part_id"]),
            geometry=SimGeometry.model_validate(data["geometry"]),
            surface_level=float(data["surface_level"]),
            indications=tuple(
                Indication(
                    **{
                        **i,
                        "jitter": tuple(float(v) for v in i["jitter"]),
                        "strokes": tuple(tuple(float(v) for v in s) for s in i.get("strokes", ())),
                    }
                )
                for i in data["indications"]
            ),
            deposits=tuple(Deposit(**d) for d in data["deposits"]),
            seed=int(data["seed"]),
            notes={str(k): str(v) for k, v in data.get("notes", {}).items()},
            look=Look(**data.get("look", {})),
            min_length_mm=float(data.get("min_length_mm", 1.0)),
            min_contrast=float(data.get("min_contrast", 30.0)),
        )


def with_indications(part: SimPart, indications: Iterable[Indication]) -> SimPart:
    """The same part (surface, deposits, pose, light) carrying exactly ``indications``.

    To add to what it has: ``with_indications(part, (*part.indications, new))``.
    """
    return dataclasses.replace(part, indications=tuple(indications))


def sample_part(
    rng: np.random.Generator,
    geometry: SimGeometry,
    part_id: str,
    defective: bool,
    *,
    conditions: Conditions = DEFAULT,
    min_length_mm: float = 1.0,
    min_contrast: float = 30.0,
) -> SimPart:
    """Draw a part: 1-3 relevant indications when defective (shank twice as likely as head, as
    seen in the plant), sub-threshold ones with the conditions' probability, deposits always."""
    c = conditions
    indications: list[Indication] = []
    if defective:
        for _ in range(rng.integers(1, 4)):
            crack = sample_indication(
                rng, geometry, c, relevant=True, min_length_mm=min_length_mm, min_contrast=min_contrast
            )
            assert crack is not None  # a relevant one is always drawn (or the call raised)
            indications.append(crack)
    if rng.random() < (c.subthreshold_defective if defective else c.subthreshold_good):
        for _ in range(rng.integers(1, 3)):
            small = sample_indication(
                rng, geometry, c, relevant=False, min_length_mm=min_length_mm, min_contrast=min_contrast
            )
            if small is not None:
                indications.append(small)
    deposits = tuple(_deposit(rng, geometry, c) for _ in range(rng.integers(c.deposits[0], c.deposits[1] + 1)))
    surface = uniform(rng, c.surface_level)
    return SimPart(
        part_id=part_id,
        geometry=geometry,
        surface_level=surface,
        indications=tuple(indications),
        deposits=deposits,
        seed=int(rng.integers(0, 2**31)),
        notes={"conditions": c.name},
        look=sample_look(rng, c, surface, geometry),
        min_length_mm=min_length_mm,
        min_contrast=min_contrast,
    )


def make_indication(
    rng: np.random.Generator,
    geometry: SimGeometry,
    region: Region,
    length_mm: float,
    contrast: float,
    kind: IndicationKind = "crack",
    *,
    shape: str | None = None,
    width_px: int = 2,
    azimuth_deg: float | None = None,
) -> Indication:
    """An indication of the given size and contrast at a random place of ``region``, placed to
    be seen: head on the flank (random azimuth, turned round the circumference if it would not
    fit the flank height), shank anywhere along the shank. ``shape`` defaults to a straight
    line ("seam" for a seam). For POD injection (sim/pod.py)."""
    if shape is None:
        shape = "seam" if kind == "seam" else "line"
    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r} is not one of {', '.join(SHAPES)}")
    if region not in ("head", "shank"):
        raise ValueError(f"region {region!r} is not head or shank")
    return _build(rng, geometry, region, float(length_mm), float(contrast), shape, int(width_px), kind, azimuth_deg)


def sample_indication(
    rng: np.random.Generator,
    geometry: SimGeometry,
    conditions: Conditions = DEFAULT,
    *,
    relevant: bool = True,
    min_length_mm: float = 1.0,
    min_contrast: float = 30.0,
    region: Region | None = None,
    azimuth_deg: float | None = None,
) -> Indication | None:
    """One indication as the conditions draw them: relevant (at least the minimum length and
    contrast), or sub-threshold (shorter or fainter; None if the conditions draw none)."""
    g, c, min_length = geometry, conditions, min_length_mm
    if region is None:
        region = "head" if rng.random() < c.head_fraction else "shank"
    names, weights = zip(*c.shapes, strict=True)
    shape = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
    if region == "head" and shape == "seam":
        shape = "line"  # seams run along the shank; the flank is too short for one
    lo, hi = c.length_mm
    if region == "head":
        hi = min(hi, math.pi * g.head_across_flats_mm / 4)  # a quarter turn: one view sees most of it
    clo, chi = c.contrast
    if relevant:
        if min_length > hi or min_contrast > chi:
            raise ValueError(
                f"the profile minimum ({min_length:g} mm, {min_contrast:g} grey levels) is beyond what "
                f"the {c.name} conditions draw ({hi:g} mm, {chi:g} grey levels)"
            )
        length = log_uniform(rng, max(lo, min_length), hi)
        contrast = log_uniform(rng, max(clo, min_contrast), chi)
    else:
        ways = [w for w, ok in (("short", lo < min_length), ("faint", clo < min_contrast)) if ok]
        if not ways:
            return None  # these conditions draw nothing smaller
        if rng.choice(ways) == "short":
            length, contrast = log_uniform(rng, lo, min(min_length, hi)) * 0.999, log_uniform(rng, clo, chi)
        else:
            length, contrast = log_uniform(rng, lo, hi), log_uniform(rng, clo, min_contrast) * 0.999
    width = int(rng.integers(c.width_px[0], c.width_px[1] + 1))
    if shape == "seam":
        width = min(width, 2)  # a seam is a tight, thin line
    kind: IndicationKind = "seam" if shape == "seam" else "mark" if length < MARK_MM else "crack"
    fillet = region == "head" and rng.random() < c.fillet_fraction
    return _build(rng, g, region, length, contrast, shape, width, kind, azimuth_deg, fillet=fillet)


def _build(
    rng: np.random.Generator,
    g: SimGeometry,
    region: Region,
    length: float,
    contrast: float,
    shape: str,
    width: int,
    kind: IndicationKind,
    azimuth: float | None,
    *,
    fillet: bool = False,
) -> Indication:
    # a crack meanders along grain boundaries (a bend every ~0.4 mm), a seam follows the rolling
    points = max(6, math.ceil(length / 0.4))
    wiggle = 0.01 if shape == "seam" else 0.04
    jitter = tuple(float(v) for v in rng.normal(0.0, wiggle, size=points))
    bend = 0.0
    strokes: tuple[tuple[float, ...], ...] = ()
    if shape == "seam":
        angle = rng.uniform(82.0, 98.0)
    elif fillet:
        angle = rng.uniform(-20.0, 20.0) % 180.0  # round the fillet, as forging cracks run
    else:
        angle = rng.uniform(0.0, 180.0)
    if shape == "curved":
        bend = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.3) * length)
    elif shape == "branched":
        strokes = tuple(_branch(rng, length) for _ in range(rng.integers(1, 4)))
    elif shape == "cluster":
        strokes = _dashes(rng, length)
    ind = Indication(
        kind=kind,
        region=region,
        azimuth_deg=float(rng.uniform(0.0, 360.0) if azimuth is None else azimuth),
        z_mm=0.0,
        length_mm=float(length),
        angle_deg=float(angle),
        width_px=int(width),
        contrast=float(contrast),
        jitter=jitter,
        shape=shape,
        bend_mm=bend,
        strokes=strokes,
    )
    if region == "head" and fillet:
        lo, hi = g.head_height_mm + 0.05, g.head_height_mm + FILLET_SPAN_MM
    elif region == "head":
        lo, hi = FLANK_MARGIN_MM, g.head_height_mm - FLANK_MARGIN_MM
    else:
        lo, hi = 0.5, g.length_mm - 0.5
    if region == "head":
        ind = _fit_height(ind, hi - lo)
    z0, z1 = _z_extent(ind)
    z = rng.uniform(lo - z0, hi - z1) if hi - lo > z1 - z0 else 0.5 * (lo + hi - z0 - z1)
    return dataclasses.replace(ind, z_mm=float(z))


def _z_extent(ind: Indication) -> tuple[float, float]:
    zs = np.concatenate([s[:, 1] for s in indication_strokes(ind)])
    return float(zs.min()), float(zs.max())


def _fit_height(ind: Indication, room: float) -> Indication:
    """Turn an indication towards the circumference until it fits ``room`` mm of flank."""
    for _ in range(16):
        z0, z1 = _z_extent(ind)
        if z1 - z0 <= room:
            return ind
        a = ind.angle_deg
        turned = a * 0.7 if a <= 90.0 else 180.0 - (180.0 - a) * 0.7
        ind = dataclasses.replace(ind, angle_deg=turned)
    if ind.shape != "line":  # bowed or branched too wide even lying round: a plain line fits
        return _fit_height(dataclasses.replace(ind, shape="line", bend_mm=0.0, strokes=()), room)
    return ind


def _branch(rng: np.random.Generator, length: float) -> tuple[float, ...]:
    """A side crack from a point of the main path, at 25-60 deg to it."""
    t0 = rng.uniform(-0.3, 0.3) * length
    run = rng.uniform(0.2, 0.5) * length
    a = math.radians(rng.choice([-1.0, 1.0]) * rng.uniform(25.0, 60.0))
    n = max(3, math.ceil(run / 0.25))
    s = np.linspace(0.0, run, n)
    wiggle = rng.normal(0.0, 0.04, size=n)
    wiggle[0] = 0.0
    t = t0 + s * math.cos(a) - wiggle * math.sin(a)
    p = s * math.sin(a) + wiggle * math.cos(a)
    return tuple(float(v) for v in np.stack([t, p], axis=1).ravel())


def _dashes(rng: np.random.Generator, length: float) -> tuple[tuple[float, ...], ...]:
    """3-8 short aligned lines over ``length``, gaps well under 1.6 mm (ASTM E1444 counts
    aligned indications closer than 1/16 in as one)."""
    n = int(np.clip(round(length / 0.5), 3, 8))
    pitch = length / n
    dashes = []
    for k in range(n):
        centre = -length / 2 + (k + 0.5) * pitch
        half = 0.5 * pitch * rng.uniform(0.45, 0.8)
        a = math.radians(rng.uniform(-15.0, 15.0))
        off = rng.normal(0.0, 0.05)
        ends = [
            (centre - half * math.cos(a), off - half * math.sin(a)),
            (centre + half * math.cos(a), off + half * math.sin(a)),
        ]
        dashes.append(tuple(float(v) for xy in ends for v in xy))
    # the extremes touch the cluster's ends so its extent is its length
    first, last = list(dashes[0]), list(dashes[-1])
    first[0], last[2] = -length / 2, length / 2
    dashes[0], dashes[-1] = tuple(first), tuple(last)
    return tuple(dashes)


def _deposit(rng: np.random.Generator, g: SimGeometry, c: Conditions) -> Deposit:
    region: Region = "head" if rng.random() < 0.35 else "shank"
    z_max = g.head_height_mm + FILLET_SPAN_MM if region == "head" else g.length_mm
    streak = rng.random() < c.deposit_streak_fraction
    along = rng.uniform(0.4, 1.4) if streak else rng.uniform(0.15, 0.5)
    across = uniform(rng, c.deposit_streak_width_mm) if streak else along * rng.uniform(0.6, 1.0)
    return Deposit(
        region=region,
        azimuth_deg=float(rng.uniform(0, 360)),
        z_mm=float(rng.uniform(0.2, z_max)),
        sigma_along_mm=float(along),
        sigma_across_mm=float(across),
        angle_deg=float(rng.uniform(0, 180)),
        brightness=uniform(rng, c.deposit_level),
    )
