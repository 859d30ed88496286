"""Renderer determinism, ground truth and the host-side conversion of delivered pixels."""

from __future__ import annotations

import numpy as np
import pytest

from cellctl.config import ViewSpec, resolve_profile
from cellctl.sim.conditions import SEED
from cellctl.sim.part import sample_part
from cellctl.sim.scene import Renderer
from cellctl.sim.sensor import to_bayer_rg8, to_rgb8
from cellctl.sim.truth import view_labels
from cellctl.vision import InvalidImage, model_input, tile_rgb, to_rgb
from tests.conftest import PROFILES


@pytest.fixture(scope="module")
def m8():
    return resolve_profile(PROFILES / "m8x40-hex.yaml", verify_model=False)


def _render(profile, seed: int, part_seed: int, defective: bool, conditions=None):
    kw = {} if conditions is None else {"conditions": conditions}
    part = sample_part(np.random.default_rng(part_seed), profile.profile.geometry, "p", defective, **kw)
    renderer = Renderer(seed)
    heads = [renderer.head_view(part, a).image for a in profile.profile.head_positions_deg]
    return part, heads, renderer.strip(part, 2048)


def _views(profile) -> list[ViewSpec]:
    """The seed's fixed views: each head frame whole, the shank in 4 tiles round the turn."""
    heads = [ViewSpec(f"head@{a:g}", "head", i, 0, 0, 2464, 2056) for i, a in enumerate(profile.head_positions_deg)]
    tiles = [ViewSpec(f"shank[r{r},c0]", "shank", -1, 196, 512 * r, 680, 512) for r in range(4)]
    return heads + tiles


def test_same_seed_renders_identical_pixels(m8):
    _, heads_a, strip_a = _render(m8, seed=5, part_seed=11, defective=True)
    _, heads_b, strip_b = _render(m8, seed=5, part_seed=11, defective=True)
    for a, b in zip(heads_a, heads_b, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(strip_a.image, strip_b.image)


def test_another_part_renders_other_pixels(m8):
    _, heads_a, strip_a = _render(m8, seed=5, part_seed=11, defective=True)
    _, heads_b, strip_b = _render(m8, seed=5, part_seed=12, defective=True)
    assert not np.array_equal(heads_a[0], heads_b[0])
    assert not np.array_equal(strip_a.image, strip_b.image)


def test_indications_are_bright_and_labelled_in_the_views_that_show_them(m8):
    views = _views(m8.profile)
    for part_seed in range(12):
        part, _, strip = _render(m8, seed=1, part_seed=part_seed, defective=True, conditions=SEED)
        clean_part, _, clean_strip = _render(m8, seed=1, part_seed=part_seed, defective=False, conditions=SEED)
        labels = view_labels(part, m8.profile, strip, views)
        assert any(labels), f"part {part_seed}: no view shows its {len(part.indications)} indications"
        for ind, pts in zip(part.indications, strip.points, strict=True):
            if ind.region == "shank":
                x, y = pts[len(pts) // 2].astype(int)
                assert strip.image[y, x] > clean_strip.image[y, x] + 60  # a bright line, not haze
        assert not any(view_labels(clean_part, m8.profile, clean_strip, views))


def test_bayer_rg8_is_demosaiced_to_the_right_channels():
    intensity = np.full((64, 64), 200.0, np.float32)
    rgb = to_rgb(to_bayer_rg8(intensity), "BayerRG8", 8, 8, 32, 32)
    r, g, b = (float(rgb[..., c].mean()) for c in range(3))
    # behind the BP525 filter green dominates, red leaks a little more than blue
    assert g > 190 and r < 40 and b < 30 and r > b


def test_region_is_cut_at_odd_offsets_without_breaking_the_mosaic():
    intensity = np.zeros((64, 64), np.float32)
    intensity[20:30, 21:31] = 200.0
    rgb = to_rgb(to_bayer_rg8(intensity), "BayerRG8", 21, 20, 10, 10)
    assert rgb.shape == (10, 10, 3)
    assert rgb[2:8, 2:8, 1].min() > 150  # the green block, not a shifted pattern


def test_model_input_is_one_normalised_tile(m8):
    _, heads, strip = _render(m8, seed=1, part_seed=3, defective=False)
    tiles = [
        (to_bayer_rg8(heads[0]), "BayerRG8", ViewSpec("head@0", "head", 0, 976, 900, 512, 512)),
        (to_rgb8(strip.image), "RGB8", ViewSpec("shank[r3,c0]", "shank", -1, 196, 1800, 680, 512)),  # wraps
    ]
    for data, fmt, view in tiles:
        x = model_input(tile_rgb(data, fmt, view), m8.profile.preprocess)
        assert x.shape == (3, 224, 224) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x[1].mean() > x[0].mean()  # green fluorescence


def test_region_outside_the_image_is_an_invalid_image():
    with pytest.raises(InvalidImage, match="outside"):
        to_rgb(np.zeros((100, 100), np.uint8), "BayerRG8", 90, 90, 20, 20)
    with pytest.raises(InvalidImage, match="unsupported pixel format"):
        to_rgb(np.zeros((100, 100), np.uint8), "BayerGR12", 0, 0, 20, 20)
