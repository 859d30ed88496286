"""Masks label tiles: a tile a relevant indication crosses is a positive, a clean one a negative,
one that shows only a faint or cut indication neither; a defective image with a mask trains its
tiles one by one, without a mask (or with --no-masks) as a whole."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cellctl.commands.common import find_profile
from cellctl.config import ViewSpec
from cellctl.ood.calibrate import tiles_of
from cellctl.sim.conditions import SEED
from cellctl.sim.export import export_parts
from cellctl.train.bags import Bags, min_length_px
from cellctl.train.fit import FitConfig, _step_groups
from cellctl.train.items import Item
from cellctl.train.masks import (
    CLEAR_PX,
    NEGATIVE,
    POSITIVE,
    UNKNOWN,
    BadMask,
    draw_mask,
    mask_path,
    read_mask,
    tile_labels,
    write_mask,
)
from cellctl.vision.images import read_camera_image


def tile(x: int, y: int, side: int = 20) -> ViewSpec:
    return ViewSpec("t", "shank", -1, x, y, side, side)


def line(x0: int, x1: int, y: int) -> np.ndarray:
    return np.array([[x, y] for x in range(x0, x1)], np.float32)


def test_a_tile_is_positive_only_where_enough_of_a_relevant_indication_lies() -> None:
    mask = draw_mask((100, 100), [line(5, 5 + CLEAR_PX, 10), line(60, 90, 70)], [True, False])
    labels = tile_labels(mask, [tile(0, 0), tile(5 + CLEAR_PX - 3, 0), tile(40, 40), tile(60, 60)])
    # whole relevant line; its last 3 px only (cut by the edge); nothing; a sub-threshold line
    assert labels.tolist() == [POSITIVE, UNKNOWN, NEGATIVE, UNKNOWN]


def test_a_sliver_of_a_long_indication_is_no_positive() -> None:
    # 100 px long; the profile's minimum is 24 px: a tile needs 24 px of it (or half of a short one)
    mask = draw_mask((100, 300), [line(100, 200, 50), line(20, 32, 80)], [True, True])
    labels = tile_labels(mask, [tile(180, 40), tile(170, 40, 30), tile(15, 70)], min_length_px=24)
    assert labels.tolist() == [UNKNOWN, POSITIVE, POSITIVE]  # 20 px of it; 30 px; all of a 12 px one
    # two separate slivers in one tile do not add up to one indication
    apart = draw_mask((100, 100), [line(0, 6, 10), line(0, 6, 15)], [True, True])
    assert tile_labels(apart, [tile(0, 0)], min_length_px=24).tolist() == [UNKNOWN]


def test_a_strip_tile_past_the_last_row_sees_the_first_rows() -> None:
    mask = draw_mask((100, 100), [line(10, 30, 3)], [True])
    assert tile_labels(mask, [tile(5, 90)]).tolist() == [POSITIVE]  # rows 90..109 wrap to 0..9
    assert tile_labels(mask, [tile(5, 70)]).tolist() == [NEGATIVE]


def test_where_two_indications_cross_the_relevant_one_shows() -> None:
    mask = draw_mask((40, 40), [line(0, 40, 20), line(0, 40, 20)], [True, False])
    assert (mask[20] == 255).all()


def test_a_mask_of_another_size_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "masks" / "head" / "a.png"
    write_mask(path, np.zeros((30, 40), np.uint8))
    assert read_mask(path, (30, 40, 3)).shape == (30, 40)
    with pytest.raises(BadMask, match=r"a\.png: 40 x 30 px, its image is 50 x 30"):
        read_mask(path, (30, 50))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(BadMask, match="not a readable PNG"):
        read_mask(tmp_path / "bad.png", (30, 40))


def bags(tile_label: list[list[int]], label: list[float]) -> Bags:
    counts = np.array([len(t) for t in tile_label], np.int64)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flat = np.array([v for t in tile_label for v in t], np.int8)
    x = np.zeros((len(flat), 3, 8, 8), np.uint8)
    found = tuple(Item("p", ((Path(f"{b}.png"), "head"),), y > 0.5, f"k{b}", f"{b}") for b, y in enumerate(label))
    return Bags(x, start, counts, np.array(label, np.float32), flat, found, ())


def test_a_located_indication_trains_its_tiles_one_by_one() -> None:
    b = bags(
        [
            [NEGATIVE] * 5,  # a good image
            [NEGATIVE, POSITIVE, UNKNOWN, NEGATIVE, POSITIVE],  # a defective one with a mask
            [UNKNOWN] * 3,  # a defective one without
        ],
        [0.0, 1.0, 1.0],
    )
    cfg = FitConfig(good_tiles_per_bag=2)
    groups, targets = _step_groups(b, np.array([0, 1, 2]), np.random.default_rng(0), cfg)
    assert len(groups[0]) == 2 and targets[0] == 0.0 and set(groups[0]) <= set(range(5))
    located = sorted((int(g[0]), t) for g, t in zip(groups[1:-1], targets[1:-1], strict=True))
    assert all(len(g) == 1 for g in groups[1:-1])
    assert located == [(5, 0.0), (6, 1.0), (8, 0.0), (9, 1.0)]  # never the UNKNOWN tile 7
    assert groups[-1].tolist() == [10, 11, 12] and targets[-1] == 1.0
    groups, targets = _step_groups(b, np.array([1]), np.random.default_rng(0), FitConfig(masks=False))
    assert [g.tolist() for g in groups] == [[5, 6, 7, 8, 9]] and targets == [1.0]


def test_the_exported_masks_lie_on_the_indications_the_renders_show(tmp_path: Path) -> None:
    """Real renders (seed look: bright indications): along every mask's relevant path the image
    is brighter than 8 px beside it, in head frames (Bayer: an even shift keeps the colour
    phase) and strips alike; and every defective image has a tile the mask calls positive."""
    export_parts(tmp_path, "m8x40-hex", None, parts=6, seed=31, defect_rate=1.0, conditions=SEED)
    rp, _, _ = find_profile("m8x40-hex", None, verify_model=False)
    checked = 0
    for kind in ("head", "shank"):
        for image in sorted((tmp_path / kind / "defect").iterdir()):
            data, _ = read_camera_image(image, kind, rp.profile)
            plane = data if data.ndim == 2 else data[..., 1]
            mask = read_mask(mask_path(tmp_path, kind, image), plane.shape)
            on = mask == 255
            beside = np.roll(on, 8, axis=1) & ~cv2.dilate(on.astype(np.uint8), np.ones((9, 9))).astype(bool)
            assert plane[on].mean() > plane[beside].mean() + 20, image.name
            _, tiles, _ = tiles_of(rp, image, kind)
            assert (tile_labels(mask, tiles, min_length_px(rp, kind)) == POSITIVE).any(), image.name
            checked += 1
    assert checked >= 6
