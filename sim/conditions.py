"""What the simulator randomises per part, within which ranges, and why: the two presets.

``SEED`` reproduces the look of the renders the committed student was trained on: a clean,
evenly wetted part in the same place every time, indications 130-200 grey levels bright,
dim deposits, nothing else. On it one line of code (max green in the part >= 166) scores
100 %, so it measures nothing. ``PLANT`` adds what real wet-fluorescent MPI images of
fasteners have (cell.md section 7: non-relevant indications from geometry, poor cleaning,
bath state) and what a fixture and a UV bar do from part to part. Every range is drawn once
per part (``sample_look``): the 4 head frames and the strip of a part share it, as the real
shots of one part share its seating, bath and lamp.

Intensities are grey levels of the scene (8-bit units, the green channel the camera
delivers, see scene.py) at nominal lamp and camera gain. Lengths in mm on the part surface,
blur in pixels of the camera that sees it.

Switching the default preset is one line: ``DEFAULT`` below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cellctl.config import SimGeometry

Range = tuple[float, float]  # (low, high), drawn uniformly unless the field says otherwise
Shape = str  # "line" | "curved" | "branched" | "seam" | "cluster"

DARK_LEVEL = 6.0  # sensor black level plus stray light behind the BP525 filter: never below


@dataclass(frozen=True)
class Conditions:
    name: str
    # --- the wetted surface ---------------------------------------------------------------
    # film brightness: bath concentration (0.1-0.4 mL/100 mL settling volume, cell.md 7),
    # drain time and exposure change it from part to part; the seed bath was one state
    surface_level: Range
    # uneven coverage, relative +- of a smooth field: runs and drips of the suspension
    coverage: Range
    # its correlation length in camera pixels (runs are mm long, drips shorter)
    coverage_cell_px: Range
    # particle grain, relative std of a fine (~1 px) texture: the film is particles, not paint
    grain: Range
    # --- particle build-up at geometry: non-relevant indications (cell.md 7) -------------
    # multiplicative shade of the line where two hex flats meet (the face seen edge-on)
    corner_shade: Range
    # grey levels added along the hex corners and the flank's top edge (flux leaks at edges)
    hex_edge: Range
    # grey levels of the band at the under-head fillet (section change: flux leaks there)
    fillet: Range
    # its width along the axis, mm (the fillet radius of an M8-M12 bolt is 0.4-0.6 mm)
    fillet_mm: Range
    # grey levels the thread roots hold over the crests (seed: 24, always the same)
    thread_root: Range
    # exponent of the root profile: high = thin sharp lines, low = broad bands
    thread_sharpness: Range
    # --- harmless deposits (poor cleaning, dried suspension, fibres) ----------------------
    deposits: tuple[int, int]  # per part, inclusive
    deposit_level: Range  # peak grey levels: some as bright as a faint indication
    deposit_streak_fraction: float  # share of streaks (elongated) among blobs
    deposit_streak_width_mm: Range  # Gaussian sigma across a streak
    # --- indications (true defects and smaller ones) --------------------------------------
    # grey levels over the local surface, drawn log-uniformly (so many are faint); the part
    # sampler splits the range at the profile's minimum into relevant and sub-threshold
    contrast: Range
    length_mm: Range  # log-uniform, split the same way at the profile's minimum length
    width_px: tuple[int, int]  # line width in camera pixels, inclusive
    shapes: tuple[tuple[Shape, float], ...]  # shape and its weight
    head_fraction: float  # share of indications on the head (flank or under-head fillet)
    fillet_fraction: float  # of those on the head: in the fillet, where forging cracks start
    # probability that a good part carries sub-threshold indications (what POD and the
    # "reported separately" list are about), and that a defective part carries extra ones
    subthreshold_good: float
    subthreshold_defective: float
    # --- pose within the fixture tolerance (lead's profile: 3 mm, 8 %, 3 deg) -------------
    shift_mm: float  # largest |offset| across and along the axis (seating, gripper play)
    scale: Range  # magnification: working distance varies with seating (+-3 %)
    tilt_deg: float  # largest |tilt| of the axis in the frame image (and its wobble in the strip)
    runout_mm: Range  # eccentricity on the turntable: axial wobble amplitude in the strip
    # --- optics and light -----------------------------------------------------------------
    blur_px: Range  # Gaussian sigma of defocus (depth of field at 35 mm, f/4, 200 mm)
    lamp: Range  # UV irradiance relative to nominal: LED ageing, warm-up, dirty window
    glare_probability: float  # share of parts with a specular patch (wet film, shiny head)
    glare_level: Range  # its peak grey levels
    glare_width_mm: Range  # sigma across the axis: a broad highlight, never thin
    glare_length_mm: Range  # sigma along the axis
    background_level: Range  # fixture behind the part, grey levels incl. DARK_LEVEL
    background_unevenness: Range  # relative +- of a smooth field over the frame
    specks: tuple[int, int]  # stray fluorescent specks on the fixture, per part
    speck_level: Range  # their peak grey levels (specks are brighter than the film)
    puddles: tuple[int, int]  # fluorescent puddles on the fixture, per part
    puddle_level: Range
    puddle_size_mm: Range  # Gaussian sigma


SEED = Conditions(
    name="seed",
    surface_level=(38.0, 58.0),
    coverage=(0.10, 0.10),
    coverage_cell_px=(64.0, 64.0),
    grain=(0.0, 0.0),
    corner_shade=(0.7, 0.7),
    hex_edge=(0.0, 0.0),
    fillet=(0.0, 0.0),
    fillet_mm=(0.3, 0.3),
    thread_root=(24.0, 24.0),
    thread_sharpness=(6.0, 6.0),
    deposits=(6, 16),
    deposit_level=(20.0, 55.0),
    deposit_streak_fraction=0.4,
    deposit_streak_width_mm=(0.12, 0.25),
    contrast=(130.0, 200.0),
    length_mm=(1.2, 8.0),
    width_px=(2, 3),
    shapes=(("line", 0.75), ("seam", 0.25)),
    head_fraction=1 / 3,
    fillet_fraction=0.15,
    subthreshold_good=0.0,
    subthreshold_defective=0.0,
    shift_mm=0.0,
    scale=(1.0, 1.0),
    tilt_deg=0.0,
    runout_mm=(0.0, 0.0),
    blur_px=(0.0, 0.0),
    lamp=(1.0, 1.0),
    glare_probability=0.0,
    glare_level=(0.0, 0.0),
    glare_width_mm=(1.0, 1.0),
    glare_length_mm=(3.0, 3.0),
    background_level=(DARK_LEVEL, DARK_LEVEL),
    background_unevenness=(0.0, 0.0),
    specks=(0, 0),
    speck_level=(0.0, 0.0),
    puddles=(0, 0),
    puddle_level=(0.0, 0.0),
    puddle_size_mm=(1.0, 1.0),
)

PLANT = Conditions(
    name="plant",
    surface_level=(35.0, 70.0),
    coverage=(0.10, 0.30),
    coverage_cell_px=(40.0, 160.0),
    grain=(0.04, 0.15),
    corner_shade=(0.6, 1.0),
    hex_edge=(0.0, 60.0),
    fillet=(0.0, 90.0),
    fillet_mm=(0.15, 0.5),
    thread_root=(10.0, 70.0),
    thread_sharpness=(3.0, 10.0),
    deposits=(6, 24),
    deposit_level=(15.0, 90.0),
    deposit_streak_fraction=0.5,
    deposit_streak_width_mm=(0.06, 0.25),
    contrast=(20.0, 200.0),
    length_mm=(0.3, 10.0),
    width_px=(1, 4),
    shapes=(("line", 0.3), ("curved", 0.2), ("branched", 0.15), ("seam", 0.15), ("cluster", 0.2)),
    head_fraction=1 / 3,
    fillet_fraction=0.3,
    subthreshold_good=0.3,
    subthreshold_defective=0.3,
    shift_mm=2.0,
    scale=(0.97, 1.03),
    tilt_deg=2.0,
    runout_mm=(0.0, 0.15),
    blur_px=(0.0, 1.5),
    lamp=(0.6, 1.0),
    glare_probability=0.5,
    glare_level=(10.0, 70.0),
    glare_width_mm=(0.3, 1.5),
    glare_length_mm=(1.0, 6.0),
    background_level=(6.0, 25.0),
    background_unevenness=(0.1, 0.5),
    specks=(0, 40),
    speck_level=(15.0, 120.0),
    puddles=(0, 3),
    puddle_level=(5.0, 30.0),
    puddle_size_mm=(0.5, 3.0),
)

PRESETS = {c.name: c for c in (SEED, PLANT)}

DEFAULT = SEED  # what the shipped student was trained on; PLANT: `cellctl sim --conditions plant`


@dataclass(frozen=True)
class Look:
    """One part's draw from the conditions: what the renderer varies besides the surface
    content. The defaults are the seed look (a hand-made ``SimPart`` renders as before)."""

    coverage: float = 0.1
    coverage_cell_px: float = 64.0
    grain: float = 0.0
    corner_shade: float = 0.7
    hex_edge: float = 0.0
    fillet: float = 0.0
    fillet_mm: float = 0.3
    thread_root: float = 24.0
    thread_sharpness: float = 6.0
    shift_x_mm: float = 0.0  # across the axis, head frames (+x right)
    shift_z_mm: float = 0.0  # along the axis, head frames (+y down) and strip (+x)
    scale: float = 1.0
    tilt_deg: float = 0.0  # in-plane tilt of the axis in the head frames (+: lower end to the right)
    wobble_mm: float = 0.0  # strip: amplitude of the axial shift over one turn
    wobble_phase_deg: float = 0.0
    blur_head_px: float = 0.0
    blur_strip_px: float = 0.0
    lamp: float = 1.0
    glare: float = 0.0  # peak grey levels, 0 = none
    glare_x: float = 0.0  # across the part: -1 left silhouette .. 1 right (fixed to the camera)
    glare_z_mm: float = 0.0  # from the head top along the axis
    glare_width_mm: float = 1.0
    glare_length_mm: float = 3.0
    background: float = DARK_LEVEL  # fixture level, grey levels incl. DARK_LEVEL
    background_unevenness: float = 0.0
    specks: int = 0
    speck_level: float = 0.0
    puddles: int = 0
    puddle_level: float = 0.0
    puddle_size_mm: float = 1.0


def uniform(rng: np.random.Generator, r: Range) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform in log: as many indications between 20 and 40 as between 100 and 200."""
    if hi <= lo:
        return float(lo)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_look(rng: np.random.Generator, c: Conditions, surface_level: float, geometry: SimGeometry) -> Look:
    tilt = uniform(rng, (-c.tilt_deg, c.tilt_deg))
    glare = rng.random() < c.glare_probability
    # fixture fluorescence above a third of the film's is a set-up fault (a flooded fixture)
    # the guard must catch, not a plant condition: the part stays well clear of its background
    background = min(uniform(rng, c.background_level), DARK_LEVEL + 0.3 * surface_level)
    return Look(
        coverage=uniform(rng, c.coverage),
        coverage_cell_px=uniform(rng, c.coverage_cell_px),
        grain=uniform(rng, c.grain),
        corner_shade=uniform(rng, c.corner_shade),
        hex_edge=uniform(rng, c.hex_edge),
        fillet=uniform(rng, c.fillet),
        fillet_mm=uniform(rng, c.fillet_mm),
        thread_root=uniform(rng, c.thread_root),
        thread_sharpness=uniform(rng, c.thread_sharpness),
        shift_x_mm=uniform(rng, (-c.shift_mm, c.shift_mm)),
        shift_z_mm=uniform(rng, (-c.shift_mm, c.shift_mm)),
        scale=uniform(rng, c.scale),
        tilt_deg=tilt,
        # a tilted axis turning on the table moves the surface line the strip camera sees
        # along the axis by r sin(tilt) each turn; run-out adds to it
        wobble_mm=abs(geometry.shank_diameter_mm / 2 * math.sin(math.radians(tilt))) + uniform(rng, c.runout_mm),
        wobble_phase_deg=uniform(rng, (0.0, 360.0)),
        blur_head_px=uniform(rng, c.blur_px),
        blur_strip_px=uniform(rng, c.blur_px),
        lamp=uniform(rng, c.lamp),
        glare=uniform(rng, c.glare_level) if glare else 0.0,
        glare_x=uniform(rng, (-0.7, 0.7)),
        # where the bar's reflection lands: on the head flank or the upper shank
        glare_z_mm=uniform(rng, (0.0, geometry.head_height_mm + 10.0)),
        glare_width_mm=uniform(rng, c.glare_width_mm),
        glare_length_mm=uniform(rng, c.glare_length_mm),
        background=background,
        background_unevenness=uniform(rng, c.background_unevenness),
        specks=int(rng.integers(c.specks[0], c.specks[1] + 1)),
        speck_level=uniform(rng, c.speck_level),
        puddles=int(rng.integers(c.puddles[0], c.puddles[1] + 1)),
        puddle_level=uniform(rng, c.puddle_level),
        puddle_size_mm=uniform(rng, c.puddle_size_mm),
    )
