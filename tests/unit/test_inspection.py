"""The daemon's decision path (cellctl.inspection) on rendered parts, with the committed model
through onnxruntime: the part located and wholly covered wherever the fixture puts it within
tolerance; whatever is not the profile's part, or not a part at all, is RECHECK with why."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from cellctl.config import ResolvedProfile, resolve_profile
from cellctl.inference import OnnxInferencer
from cellctl.inspection import Frame, Inspection, image_tiles, inspect_image, inspect_part
from cellctl.outcome import Outcome
from cellctl.sim.export import Shots, sample_parts, shoot
from cellctl.sim.part import SimPart, make_indication, with_indications
from cellctl.sim.scene import Renderer
from tests.conftest import PROFILES

M8 = resolve_profile(PROFILES / "m8x40-hex.yaml")
M12 = resolve_profile(PROFILES / "m12x80-hex.yaml")


@pytest.fixture(scope="module")
def model() -> OnnxInferencer:
    return OnnxInferencer(M8.model_path, M8.profile.model.sha256, 2, input_size_px=224)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(808)


def _part(rp: ResolvedProfile, seed: int, defective: bool = False) -> SimPart:
    """A part of the profile from the simulator's default (plant) conditions."""
    (part,) = sample_parts(rp, seed, 1, 1.0 if defective else 0.0)
    return part


def _frames(shots: Shots) -> tuple[list[Frame], Frame]:
    return [Frame(*h) for h in shots.heads], Frame(*shots.strip)


def _inspect(renderer: Renderer, rp: ResolvedProfile, part: SimPart, model, as_profile=None) -> Inspection:
    heads, strip = _frames(shoot(renderer, rp, part))
    return inspect_part(heads, strip, as_profile or rp, model)


@pytest.mark.parametrize(
    "pose",
    [
        {"shift_x_mm": 2.0, "shift_z_mm": -2.0},
        {"scale": 1.03, "tilt_deg": 2.0},
        {"shift_x_mm": -2.0, "shift_z_mm": 2.0, "scale": 0.97, "tilt_deg": -2.0},
    ],
)
def test_a_shifted_scaled_and_tilted_part_is_still_located_and_wholly_covered(renderer, model, pose):
    for rp in (M8, M12):
        part = _part(rp, 31)
        part = dataclasses.replace(part, look=dataclasses.replace(part.look, **pose))
        result = _inspect(renderer, rp, part, model)
        assert result.not_located == () and result.short_of_coverage == (), result.problems
        assert result.coverage["head"] >= 0.99 and result.coverage["shank"] >= 0.98, result.coverage
        assert sum(v.kind == "head" for v in result.views) >= 4


def test_an_indication_anywhere_on_a_moved_part_lies_inside_a_tile(renderer):
    """The issue's escapes: indications outside fixed regions. Tiles follow the part: a crack
    at the shank's far end of a part pushed along the axis is still inside a strip tile."""
    part = _part(M12, 32)
    part = dataclasses.replace(part, look=dataclasses.replace(part.look, shift_z_mm=2.0))
    crack = make_indication(np.random.default_rng(3), M12.profile.geometry, "shank", 2.0, 80.0)
    crack = dataclasses.replace(crack, z_mm=M12.profile.geometry.length_mm - 1.2)
    shots = shoot(renderer, M12, with_indications(part, (crack,)))
    tiles, problems = image_tiles(Frame(*shots.strip), "shank", M12)
    assert not problems
    (pts,) = [p for p in shots.strip_render.points if len(p)]
    inside = [bool(((pts[:, 0] >= t.x_px) & (pts[:, 0] < t.x_px + t.width_px)).all()) for t in tiles if t.y_px == 0]
    assert any(inside)


def test_an_empty_fixture_is_recheck_not_located(model):
    dark = Frame(np.full((2056, 2464), 6, np.uint8), "BayerRG8")
    strip = Frame(np.full((2048, 2048, 3), 4, np.uint8), "RGB8")
    result = inspect_part([dark] * 4, strip, M8, model)
    assert result.decision.outcome is Outcome.RECHECK
    assert result.not_located == ("head@0", "head@90", "head@180", "head@270", "strip")
    assert "no part seen" in result.decision.reason and result.views == ()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("uniform grey", lambda rng: np.full((2056, 2464, 3), 90, np.uint8)),
        (
            "uniform green",
            lambda rng: np.dstack(
                [
                    np.zeros((2056, 2464), np.uint8),
                    np.full((2056, 2464), 120, np.uint8),
                    np.zeros((2056, 2464), np.uint8),
                ]
            ),
        ),
        ("dim noise", lambda rng: rng.integers(0, 40, (2056, 2464, 3), dtype=np.uint8)),
        ("bright noise", lambda rng: rng.integers(0, 256, (2056, 2464, 3), dtype=np.uint8)),
        ("dim unrelated scene", lambda rng: _scene(rng)),
    ],
)
def test_featureless_noise_and_unrelated_frames_are_recheck_never_pass(model, name, make):
    rng = np.random.default_rng(5)
    frame = Frame(make(rng), "RGB8")
    result = inspect_image(frame, "head", M8, model)
    assert result.decision.outcome is Outcome.RECHECK, (name, result.decision.reason)
    strip = Frame(cv2.resize(frame.data, (2048, 2048)), "RGB8")
    assert inspect_image(strip, "shank", M8, model).decision.outcome is Outcome.RECHECK, name


def _scene(rng: np.random.Generator) -> np.ndarray:
    """Something of ordinary brightness that is no fastener: a dim desk with a few objects."""
    img = np.full((2056, 2464, 3), 12, np.uint8)
    cv2.rectangle(img, (300, 400), (1100, 900), (10, 45, 10), -1)
    cv2.circle(img, (1700, 1200), 380, (15, 60, 15), -1)
    cv2.line(img, (200, 1800), (2300, 1500), (30, 90, 30), 9)
    noise = rng.integers(0, 6, img.shape, dtype=np.uint8)
    return cv2.add(img, noise)


def test_a_strip_shown_as_a_head_view_is_recheck(renderer, model):
    shots = shoot(renderer, M8, _part(M8, 33))
    strip = shots.strip[0]
    as_head = np.zeros((2056, 2464, 3), np.uint8)
    as_head[: strip.shape[0], : strip.shape[1]] = strip
    result = inspect_image(Frame(as_head, "RGB8"), "head", M8, model)
    assert result.decision.outcome is Outcome.RECHECK and result.not_located == ("head@0",)


def test_the_wrong_part_or_the_wrong_profile_is_recheck_with_what_was_measured(renderer, model):
    m12_part = _part(M12, 34, defective=True)
    result = _inspect(renderer, M12, m12_part, model, as_profile=M8)
    assert result.decision.outcome is Outcome.RECHECK
    assert "not this profile's part" in result.decision.reason and "strip" in result.not_located
    m8_part = _part(M8, 35)
    result = _inspect(renderer, M8, m8_part, model, as_profile=M12)
    assert result.decision.outcome is Outcome.RECHECK and len(result.not_located) == 5


def test_a_part_off_its_seat_or_tilted_beyond_tolerance_is_recheck(renderer, model):
    part = _part(M8, 36)
    off = dataclasses.replace(part, look=dataclasses.replace(part.look, shift_x_mm=5.0))
    result = _inspect(renderer, M8, off, model)
    assert result.decision.outcome is Outcome.RECHECK and "from the fixture position" in result.decision.reason
    tilted = dataclasses.replace(part, look=dataclasses.replace(part.look, tilt_deg=6.0))
    result = _inspect(renderer, M8, tilted, model)
    assert result.decision.outcome is Outcome.RECHECK and "tilted" in result.decision.reason


def test_a_part_lit_over_part_of_the_turn_only_is_short_of_coverage(renderer, model):
    shots = shoot(renderer, M8, _part(M8, 37))
    heads, strip = _frames(shots)
    dark = strip.data.copy()
    dark[: dark.shape[0] // 3] = 4  # a third of the revolution unseen (light off, part slipped)
    result = inspect_part(heads, Frame(dark, strip.pixel_format), M8, model)
    assert result.decision.outcome is Outcome.RECHECK and result.short_of_coverage == ("strip",)
    assert result.coverage["shank"] < 0.8 and "below the required" in result.decision.reason


@pytest.mark.parametrize("rows", [slice(1300, None), slice(0, 64), slice(None, None, 2)], ids=["748", "64", "half"])
def test_a_strip_of_less_than_one_turn_is_recheck_not_a_whole_surface(renderer, model, rows):
    """The strip's rows are encoder lines: a short one leaves part of the turn unseen, however
    clean and wholly covered what it holds looks (a defective part's cracks may be elsewhere)."""
    part = _part(M8, 42, defective=True)
    strip = Frame(*shoot(renderer, M8, part).strip)
    cut = np.ascontiguousarray(strip.data[rows])
    result = inspect_image(Frame(cut, strip.pixel_format), "shank", M8, model)
    assert result.decision.outcome is Outcome.RECHECK and result.not_located == ("strip",)
    assert f"the strip has {cut.shape[0]} lines, a revolution is 2048" in result.decision.reason


def _defocus(frame: Frame, sigma_px: float) -> Frame:
    """The view as a lens out of focus by ``sigma_px`` camera pixels would show it (a Bayer
    mosaic blurred plane by plane: each colour site is every other pixel)."""
    data = frame.data.copy()
    if frame.pixel_format == "BayerRG8":
        for dy in (0, 1):
            for dx in (0, 1):
                data[dy::2, dx::2] = cv2.GaussianBlur(np.ascontiguousarray(data[dy::2, dx::2]), (0, 0), sigma_px / 2)
    else:
        data = cv2.GaussianBlur(data, (0, 0), sigma_px)
    return Frame(data, frame.pixel_format)


@pytest.mark.parametrize("sigma_px", [3.0, 6.0, 25.0])
def test_a_view_out_of_focus_is_recheck_whatever_the_model_scores(renderer, model, sigma_px):
    """Blur fades an indication into the film (the student then scores it clean, and the guard
    on its features reads the blurred view as typical): the silhouette edge tells it."""
    for rp in (M8, M12):
        part = _part(rp, 42, defective=True)
        heads, strip = _frames(shoot(renderer, rp, part))
        blurred = inspect_part([_defocus(h, sigma_px) for h in heads], _defocus(strip, sigma_px), rp, model)
        assert blurred.decision.outcome is not Outcome.PASS
        assert all(blurred.sharpness[v] < 0.36 for v in ("head@0", "head@90", "head@180", "head@270"))
        assert blurred.sharpness["strip"] < 0.26
        for view in ("head@0", "strip"):  # each view alone: never PASS, and out of focus said
            one = inspect_image(
                _defocus(heads[0] if view != "strip" else strip, sigma_px),
                "head" if view != "strip" else "shank",
                rp,
                model,
            )
            assert one.decision.outcome is not Outcome.PASS
            assert any("out of focus" in p for p in one.problems)
        sharp = inspect_part(heads, strip, rp, model)
        assert not any("out of focus" in p for p in sharp.problems)


def test_a_saturated_view_is_not_trusted(renderer, model):
    shots = shoot(renderer, M8, _part(M8, 38))
    heads, strip = _frames(shots)
    flooded = heads[0].data.copy()
    flooded[1000:1080, 1150:1300] = 255  # a glare spot on the head: detail clipped
    result = inspect_part([Frame(flooded, heads[0].pixel_format), *heads[1:]], strip, M8, model)
    assert result.decision.outcome is Outcome.RECHECK and "saturated" in result.decision.reason


def test_golden_renders_keep_their_verdicts(renderer, model):
    """Fixed seeds, the plant conditions: defective parts REJECT, good parts PASS (the
    committed student on the committed simulator; a change to either that flips one fails)."""
    called = {}
    for rp in (M8, M12):
        for seed, defective in ((41, False), (42, True), (43, False), (44, True)):
            part = _part(rp, seed, defective)
            called[(rp.name, seed)] = (part.defective, _inspect(renderer, rp, part, model).decision)
    wrong = {
        k: d.reason for k, (truth, d) in called.items() if d.outcome is not (Outcome.REJECT if truth else Outcome.PASS)
    }
    assert not wrong
