"""Scene intensity to the pixel formats the cameras put on the wire.

Behind the BP525 filter the sensor sees green fluorescence; the red and blue pixels get
only the filter's leakage, hence the small channel gains.
"""

from __future__ import annotations

import numpy as np

CHANNEL_GAIN_RGB = (0.10, 1.0, 0.06)


def to_rgb8(intensity: np.ndarray) -> np.ndarray:
    out = np.empty((*intensity.shape, 3), np.uint8)
    for c, gain in enumerate(CHANNEL_GAIN_RGB):
        out[..., c] = np.clip(intensity * gain + 2.0, 0, 255)
    return out


def to_bayer_rg8(intensity: np.ndarray) -> np.ndarray:
    """RGGB mosaic: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)."""
    r, g, b = CHANNEL_GAIN_RGB
    out = np.empty(intensity.shape, np.uint8)
    out[0::2, 0::2] = np.clip(intensity[0::2, 0::2] * r + 2.0, 0, 255)
    out[0::2, 1::2] = np.clip(intensity[0::2, 1::2] * g, 0, 255)
    out[1::2, 0::2] = np.clip(intensity[1::2, 0::2] * g, 0, 255)
    out[1::2, 1::2] = np.clip(intensity[1::2, 1::2] * b + 2.0, 0, 255)
    return out


def to_mono8(intensity: np.ndarray) -> np.ndarray:
    return np.clip(intensity, 0, 255).astype(np.uint8)


ENCODERS = {"RGB8": to_rgb8, "BayerRG8": to_bayer_rg8, "Mono8": to_mono8}


def encode(intensity: np.ndarray, pixel_format: str) -> np.ndarray:
    return ENCODERS[pixel_format](intensity)
