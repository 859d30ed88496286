"""From delivered pixels to the model's input tensor, the same path for daemon, eval and training.

Frames are converted by the pixel format the camera reports (not the one requested). Bayer
frames are cropped to the region first, on an even offset so the mosaic phase is kept, and
demosaiced after: converting only the region is ~10x cheaper than the full 5 MP frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from cellctl.config import PreprocessSettings, ViewSpec
from cellctl.drivers import CellError

# OpenCV names Bayer patterns after the second row; its BayerBG2RGB is GenICam BayerRG8 (RGGB).
_BAYER_TO_RGB = {"BayerRG8": cv2.COLOR_BayerBG2RGB}


class InvalidImage(CellError):
    """A view cannot be turned into model input (format, shape or region out of the image)."""


def to_rgb(data: np.ndarray, pixel_format: str, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Crop (x, y, w, h) from delivered pixels and return it as RGB8."""
    if data.dtype != np.uint8:
        raise InvalidImage(f"expected 8-bit pixels, got {data.dtype}")
    rows, cols = data.shape[:2]
    if x + w > cols or y + h > rows:
        raise InvalidImage(f"region {w}x{h}+{x}+{y} lies outside the {cols}x{rows} image")
    if pixel_format in _BAYER_TO_RGB:
        if data.ndim != 2:
            raise InvalidImage(f"{pixel_format} must be one plane, got shape {data.shape}")
        x0, y0 = x & ~1, y & ~1  # keep the RGGB phase
        x1, y1 = min(x + w + 1, cols) & ~1, min(y + h + 1, rows) & ~1
        rgb = cv2.cvtColor(np.ascontiguousarray(data[y0:y1, x0:x1]), _BAYER_TO_RGB[pixel_format])
        return rgb[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
    if pixel_format == "RGB8":
        if data.ndim != 3 or data.shape[2] != 3:
            raise InvalidImage(f"RGB8 must be rows x cols x 3, got shape {data.shape}")
        return data[y : y + h, x : x + w]
    if pixel_format == "Mono8":
        if data.ndim != 2:
            raise InvalidImage(f"Mono8 must be one plane, got shape {data.shape}")
        return cv2.cvtColor(np.ascontiguousarray(data[y : y + h, x : x + w]), cv2.COLOR_GRAY2RGB)
    raise InvalidImage(f"unsupported pixel format {pixel_format!r}")


def tile_pixels(data: np.ndarray, spec: ViewSpec) -> tuple[np.ndarray, int]:
    """The rows a tile needs (wrapped round the strip's revolution) and its top row in them."""
    rows = data.shape[0]
    if spec.y_px + spec.height_px <= rows:
        return data, spec.y_px
    return data[np.arange(spec.y_px, spec.y_px + spec.height_px) % rows], 0


def tile_rgb(data: np.ndarray, pixel_format: str, spec: ViewSpec) -> np.ndarray:
    """A tile of delivered pixels as RGB8."""
    data, y = tile_pixels(data, spec)
    return to_rgb(data, pixel_format, spec.x_px, y, spec.width_px, spec.height_px)


def model_input(rgb: np.ndarray, settings: PreprocessSettings) -> np.ndarray:
    """A tile as the model's CHW float32 input in [0, 1]."""
    size = settings.input_size_px
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if settings.normalisation == "minmax":
        lo, hi = float(small.min()), float(small.max())
        small = (small - lo) / max(hi - lo, 1.0)
    else:
        small *= 1.0 / 255.0
    return np.ascontiguousarray(small.transpose(2, 0, 1))
