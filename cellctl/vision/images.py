"""Reading saved camera images (the eval / calibration layout) as the cameras deliver them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cellctl.config import PartProfile
from cellctl.vision.preprocess import InvalidImage

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


def read_camera_image(path: Path, kind: str, profile: PartProfile) -> tuple[np.ndarray, str]:
    """Pixels and their format: one plane is the camera's single-plane format (BayerRG8 for
    a Bayer frame camera, else Mono8); three planes are RGB8 (files store BGR)."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise InvalidImage(f"{path}: not a readable image")
    if data.dtype != np.uint8:
        raise InvalidImage(f"{path}: expected 8-bit pixels, got {data.dtype}")
    if data.ndim == 2:
        fmt = profile.frame_camera.pixel_format if kind == "head" else profile.line_scan.pixel_format
        return data, fmt if fmt in ("BayerRG8", "Mono8") else "Mono8"
    if data.shape[2] == 4:
        data = data[..., :3]
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB), "RGB8"


def write_camera_image(path: Path, data: np.ndarray, pixel_format: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.cvtColor(data, cv2.COLOR_RGB2BGR) if pixel_format == "RGB8" else data
    if not cv2.imwrite(str(path), out, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {path}")


def labelled_images(root: Path) -> list[tuple[Path, str, bool]]:
    """(path, kind, defective) for DIR/{head,shank}/{good,defect}/*, sorted."""
    items = []
    for kind in ("head", "shank"):
        for label in ("good", "defect"):
            folder = root / kind / label
            if folder.is_dir():
                items += [
                    (p, kind, label == "defect") for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
                ]
    return items
