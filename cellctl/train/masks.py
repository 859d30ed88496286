"""Where an indication is in a training image: optional masks that label tiles, not only images.

An image label says only that a defect is somewhere in the image; the daemon scores tiles, and
with image labels alone the student must find out which tile shows it (multiple-instance
learning, cellctl/train/fit.py), which on a few hundred parts it learns slowly and faintly. A
mask says where: ``DIR/masks/{head,shank}/<image name>`` beside ``DIR/{head,shank}/defect/``,
a single-channel PNG of the image's size, 0 where no indication is, ``RELEVANT`` (255) along an
indication the profile must find, any other value along one that is drawn but below the
profile's minimum (or seen too obliquely to call). `cellctl sim --export` writes them from the
simulator's truth; an integrator may draw them in a labelling tool. A tile is then a positive
when enough of a relevant indication lies in it (``tile_labels``), a negative when no
indication pixel does, and neither otherwise (a sliver cut by the tile's edge, or a faint
one). No torch here: the simulator writes masks without the ``train`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cellctl.config import ViewSpec
from cellctl.vision.preprocess import tile_pixels

MASKS = "masks"
RELEVANT = 255
BELOW = 128  # what the simulator writes for an indication below the minimum
CLEAR_PX = 8  # fewest relevant pixels in a tile for it to be a positive (the simulator's image labels too)

POSITIVE, NEGATIVE, UNKNOWN = 1, 0, -1  # a tile's label


class BadMask(Exception):
    """A mask that cannot label its image: its message names the file."""


def mask_path(root: Path, kind: str, image: Path) -> Path:
    return root / MASKS / kind / f"{image.stem}.png"


def draw_mask(shape: tuple[int, ...], paths: Sequence[np.ndarray], relevant: Sequence[bool]) -> np.ndarray:
    """Rows x cols uint8: each indication's path (x/y pixel samples ~1 px apart), relevant ones
    drawn last so that where two cross the relevant one shows."""
    rows, cols = int(shape[0]), int(shape[1])
    mask = np.zeros((rows, cols), np.uint8)
    for want in (False, True):
        for pts, rel in zip(paths, relevant, strict=True):
            if rel != want or len(pts) == 0:
                continue
            xy = np.rint(np.asarray(pts, np.float64)).astype(np.int64)
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < cols) & (xy[:, 1] >= 0) & (xy[:, 1] < rows)
            mask[xy[ok, 1], xy[ok, 0]] = RELEVANT if rel else BELOW
    return mask


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), mask, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"cannot write {path}")


def read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The mask of an image of ``shape`` (rows, cols, ...)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise BadMask(f"{path}: not a readable PNG mask")
    if mask.shape != tuple(shape[:2]):
        raise BadMask(f"{path}: {mask.shape[1]} x {mask.shape[0]} px, its image is {shape[1]} x {shape[0]}")
    return mask


def tile_labels(mask: np.ndarray, tiles: Sequence[ViewSpec], min_length_px: float = CLEAR_PX) -> np.ndarray:
    """Per tile: POSITIVE, NEGATIVE or UNKNOWN (see the module's docstring); a strip tile past the
    last row wraps round to the first, as the daemon reads it.

    A positive shows a relevant indication, not a sliver of one cut by its edge: at least
    ``CLEAR_PX`` pixels of one indication's path, and at least the profile's minimum length
    of it (``min_length_px``) or half of it, whichever is less. Indications are told apart as
    connected paths (gaps of a pixel bridged).
    """
    relevant = mask == RELEVANT
    _, comp = cv2.connectedComponents(cv2.dilate(relevant.astype(np.uint8), np.ones((3, 3), np.uint8)), connectivity=8)
    comp = np.where(relevant, comp, 0)
    sizes = np.bincount(comp.ravel())
    needed = np.maximum(CLEAR_PX, np.minimum(sizes / 2.0, min_length_px))
    out = np.full(len(tiles), UNKNOWN, np.int8)
    for i, spec in enumerate(tiles):
        rows, y = tile_pixels(comp, spec)
        window = rows[y : y + spec.height_px, spec.x_px : spec.x_px + spec.width_px]
        inside = np.bincount(window.ravel(), minlength=len(sizes))
        inside[0] = 0
        if (inside >= needed).any():
            out[i] = POSITIVE
        else:
            marks, y = tile_pixels(mask, spec)
            if not marks[y : y + spec.height_px, spec.x_px : spec.x_px + spec.width_px].any():
                out[i] = NEGATIVE
    return out
