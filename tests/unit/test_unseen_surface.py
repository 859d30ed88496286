"""Surface the cameras never showed is never PASSed: the turntable stalled (head frames and
strip lines repeat one position), a buffer line delivered again and again, a bare patch where
no particle film glows, a lamp dimmed until the student misses what it was trained to see.
Rendered parts through the daemon's decision path (cellctl.inspection) and the committed
model; each case also checks that the untouched part is not flagged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cellctl.config import ResolvedProfile
from cellctl.inference import OnnxInferencer
from cellctl.inspection import Frame, Inspection, inspect_part
from cellctl.outcome import Outcome
from cellctl.sim.export import sample_parts, shoot
from cellctl.sim.scene import SENSOR_NOISE, Renderer
from cellctl.vision.locate import locate_head, locate_strip
from cellctl.vision.repeats import MAX_REPEATED_LINES
from tests.unit.test_inspection import M8, M12


@pytest.fixture(scope="module")
def model() -> OnnxInferencer:
    return OnnxInferencer(M8.model_path, M8.profile.model.sha256, 2, input_size_px=224)


@pytest.fixture(scope="module")
def shots() -> dict[str, tuple[list[Frame], Frame]]:
    """One good part of each profile, shot once."""
    renderer = Renderer(909)
    out = {}
    for rp in (M8, M12):
        (part,) = sample_parts(rp, 61, 1, 0.0)
        s = shoot(renderer, rp, part)
        out[rp.name] = ([Frame(*h) for h in s.heads], Frame(*s.strip))
    return out


def _noisy(data: np.ndarray, seed: int) -> np.ndarray:
    """What a second exposure of the same scene gives: the sensor's noise drawn afresh."""
    noise = np.random.default_rng(seed).normal(0.0, SENSOR_NOISE, data.shape)
    return np.clip(data.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _judge(model, rp: ResolvedProfile, heads: list[Frame], strip: Frame) -> Inspection:
    return inspect_part(heads, strip, rp, model)


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_the_untouched_part_passes_with_nothing_flagged(model, shots, rp):
    heads, strip = shots[rp.name]
    result = _judge(model, rp, heads, strip)
    assert result.decision.outcome is Outcome.PASS, result.problems
    assert result.repeated == () and result.short_of_coverage == ()


@pytest.mark.parametrize("reshot", [False, True], ids=["same buffer", "reshot with fresh noise"])
@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_a_stalled_turntable_is_recheck_with_the_repeated_views(model, shots, rp, reshot):
    heads, strip = shots[rp.name]
    first = heads[0]
    stalled = [Frame(_noisy(first.data, k) if reshot else first.data, first.pixel_format) for k in range(4)]
    line = np.repeat(strip.data[1000:1001], strip.data.shape[0], axis=0)
    one_place = Frame(_noisy(line, 9) if reshot else line, strip.pixel_format)
    result = _judge(model, rp, stalled, one_place)
    assert result.decision.outcome is Outcome.RECHECK
    assert sorted(result.repeated) == ["head@180", "head@270", "head@90", "strip"], result.problems
    assert "did not turn" in result.decision.reason
    # the heads alone: the strip's turn does not vouch for them
    assert _judge(model, rp, stalled, strip).repeated == ("head@90", "head@180", "head@270")


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_strip_lines_repeating_one_buffer_line_are_recheck(model, shots, rp):
    heads, strip = shots[rp.name]
    slipped = strip.data.copy()
    slipped[700:1000] = slipped[700]  # 300 lines of one: a tenth of the turn never shot
    result = _judge(model, rp, heads, Frame(slipped, strip.pixel_format))
    assert result.decision.outcome is Outcome.RECHECK and result.repeated == ("strip",)
    assert any("lines 700-999 repeat one line" in p for p in result.problems), result.problems
    # fewer lines than MAX_REPEATED_LINES in a row: no evidence of a fault, not flagged
    short = strip.data.copy()
    short[700 : 700 + MAX_REPEATED_LINES - 1] = short[700]
    assert _judge(model, rp, heads, Frame(short, strip.pixel_format)).repeated == ()


def _bare(data: np.ndarray, x0: int, y0: int, side: int, level: float) -> np.ndarray:
    """A square patch of a head frame where no film glows: the background's level and the
    sensor's noise."""
    out = data.astype(np.float32)
    out[y0 : y0 + side, x0 : x0 + side] = level + np.random.default_rng(5).normal(0.0, SENSOR_NOISE, (side, side))
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_a_bare_patch_on_the_shank_is_surface_not_inspected(model, shots, rp):
    heads, strip = shots[rp.name]
    loc = locate_strip(strip.data, strip.pixel_format, rp.profile)
    mm = rp.profile.optics.line_px_per_mm
    x0 = loc.datum_px + int(10 * mm)

    def patched(length_mm: float, around: float) -> Inspection:
        # the patch runs on over the turn's start: one patch across the strip's last and first lines
        lines = np.arange(-100, int(around * strip.data.shape[0]) - 100) % strip.data.shape[0]
        width = int(length_mm * mm)
        noise = np.random.default_rng(5).normal(0.0, SENSOR_NOISE, (lines.size, width))
        data = strip.data.copy()
        data[lines, x0 : x0 + width, 1] = np.clip(loc.silhouette.background + noise, 0, 255).astype(np.uint8)
        return _judge(model, rp, heads, Frame(data, strip.pixel_format))

    result = patched(2.0, 0.1)
    assert result.decision.outcome is Outcome.RECHECK and result.short_of_coverage == ("strip",)
    assert any("bare patch" in p for p in result.problems), result.problems
    assert "bare patch" not in " ".join(patched(0.5, 0.1).problems)  # narrower than an indication of 1 mm


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_a_bare_patch_on_the_head_is_surface_not_inspected(model, shots, rp):
    heads, strip = shots[rp.name]
    loc = locate_head(heads[1].data, heads[1].pixel_format, rp.profile)
    side = int(2.0 * rp.profile.optics.frame_px_per_mm) & ~1
    x0, y0 = (int(loc.centre[0]) - side // 2) & ~1, (int(loc.centre[1]) - side // 2) & ~1
    # the background's level on every site of the mosaic: what the locating green plane reads there
    bare = Frame(_bare(heads[1].data, x0, y0, side, loc.silhouette.background), heads[1].pixel_format)
    result = _judge(model, rp, [heads[0], bare, *heads[2:]], strip)
    assert result.decision.outcome is Outcome.RECHECK and result.short_of_coverage == ("head@90",)
    assert any(p.startswith("head@90: bare patch") for p in result.problems), result.problems


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_a_lamp_dimmed_below_what_the_student_knows_is_recheck(model, shots, rp):
    heads, strip = shots[rp.name]

    def dim(frame: Frame, k: float) -> Frame:
        return Frame((frame.data.astype(np.float32) * k).astype(np.uint8), frame.pixel_format)

    result = _judge(model, rp, [dim(h, 0.4) for h in heads], dim(strip, 0.4))
    assert result.decision.outcome is Outcome.RECHECK
    assert "grey levels, outside 25-180" in result.decision.reason, result.decision.reason


def _smoothed(frame: Frame, box: tuple[int, int, int, int], sigma_px: float) -> Frame:
    """A patch blurred after the sensor (its noise smoothed away with the detail), each Bayer
    colour on its own as a camera's filter would."""
    x0, y0, x1, y1 = (v & ~1 for v in box)
    data = frame.data.copy()
    if frame.pixel_format == "BayerRG8":
        for dy in (0, 1):
            for dx in (0, 1):
                patch = np.ascontiguousarray(data[y0 + dy : y1 : 2, x0 + dx : x1 : 2])
                data[y0 + dy : y1 : 2, x0 + dx : x1 : 2] = cv2.GaussianBlur(patch, (0, 0), sigma_px / 2)
    else:
        data[y0:y1, x0:x1] = cv2.GaussianBlur(np.ascontiguousarray(data[y0:y1, x0:x1]), (0, 0), sigma_px)
    return Frame(data, frame.pixel_format)


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_a_patch_smoothed_after_the_sensor_is_recheck(model, shots, rp):
    """Blur over a patch the silhouette edge does not cross (the focus measure cannot see it)
    and smoothing along the strip's lines only (the edge runs across them)."""
    heads, strip = shots[rp.name]
    loc = locate_head(heads[2].data, heads[2].pixel_format, rp.profile)
    cx, cy = int(loc.centre[0]), int(loc.centre[1])
    patched = _smoothed(heads[2], (cx - 40, cy - 40, cx + 40, cy + 40), 3.0)
    result = _judge(model, rp, [*heads[:2], patched, heads[3]], strip)
    assert result.decision.outcome is Outcome.RECHECK and result.out_of_focus == ("head@180",), result.problems
    assert result.sharpness["head@180"] >= rp.profile.guard.min_head_sharpness  # the edge is as sharp as before
    assert result.noise["head@180"] < rp.profile.guard.min_noise <= min(result.noise["head@0"], result.noise["strip"])
    along = Frame(cv2.blur(strip.data, (1, 5)), strip.pixel_format)  # 5 lines averaged: smeared round the part
    result = _judge(model, rp, heads, along)
    assert result.decision.outcome is Outcome.RECHECK and result.out_of_focus == ("strip",), result.problems
    assert any(p.startswith("strip: smoothed after the sensor") for p in result.problems)


@pytest.mark.parametrize("rp", [M8, M12], ids=lambda rp: rp.name)
def test_an_unlit_band_round_the_shanks_end_is_surface_not_inspected(model, shots, rp):
    """The part then looks shorter, still well inside the size tolerance that tells another
    part (12 %), and its end was never inspected."""
    heads, strip = shots[rp.name]
    loc = locate_strip(strip.data, strip.pixel_format, rp.profile)
    g = rp.profile.geometry
    # 6 % of the part's length: past what magnification explains (4 %), short of another part (12 %)
    band = int(0.06 * (g.head_height_mm + g.length_mm) * rp.profile.optics.line_px_per_mm)
    data = strip.data.copy()
    noise = np.random.default_rng(7).normal(0.0, SENSOR_NOISE, (data.shape[0], band + 10))
    data[:, loc.end_px - band : loc.end_px + 10, 1] = np.clip(loc.silhouette.background + noise, 0, 255)
    result = _judge(model, rp, heads, Frame(data, strip.pixel_format))
    assert result.decision.outcome is Outcome.RECHECK and result.short_of_coverage == ("strip",), result.problems
    assert any("its end is not lit" in p for p in result.problems), result.problems
