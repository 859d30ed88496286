"""Classic augmentation on top of the tiles (the seed's data-centric recipe): what changes
between parts, fixtures, lamps and lenses and must not change the answer. Each is switchable
(``cellctl train --augment``), drawn per tile, and narrow on purpose: an indication labelled
relevant sits at or above the profile's minimum contrast, and a wide brightness or contrast
change would move it below, teaching the student that faint lines are a coin toss.

=========== ==========================================================================
flip        mirror along and across the axis, each with probability 1/2 (a crack has no handedness)
rotate      +-10 degrees (the part's tilt in the fixture; tiles follow the located axis only roughly)
zoom        x0.9-1.1 (working distance, seating)
shear       +-0.1 (a line-scan strip sheared by a turntable speed error)
channel     each RGB channel shifted by +-2 % of full scale (camera white balance)
brightness  x0.9-1.1 (UV irradiance, film brightness), a contrast change of +-10 % around the tile's mean
=========== ==========================================================================

Geometric changes are one affine resampling per tile with reflected borders (no black wedge a
student could learn as a cue).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS = ("flip", "rotate", "zoom", "shear", "channel", "brightness")
ROTATE_DEG = 10.0
ZOOM = (0.9, 1.1)
SHEAR = 0.1
CHANNEL = 0.02
BRIGHTNESS = (0.9, 1.1)


def augment(x: torch.Tensor, rng: np.random.Generator, enabled: frozenset[str]) -> torch.Tensor:
    """``x``: (N, 3, S, S) in [0, 1]; a new tensor, every tile drawn on its own."""
    n = len(x)
    if n == 0 or not enabled:
        return x

    def draw(lo: float, hi: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(lo, hi, shape).astype(np.float32))

    if "flip" in enabled:
        across = torch.from_numpy(rng.random(n) < 0.5)
        along = torch.from_numpy(rng.random(n) < 0.5)
        x = torch.where(across[:, None, None, None], x.flip(3), x)
        x = torch.where(along[:, None, None, None], x.flip(2), x)
    if enabled & {"rotate", "zoom", "shear"}:
        angle = draw(-ROTATE_DEG, ROTATE_DEG) * (math.pi / 180) if "rotate" in enabled else torch.zeros(n)
        scale = draw(*ZOOM) if "zoom" in enabled else torch.ones(n)
        shear = draw(-SHEAR, SHEAR) if "shear" in enabled else torch.zeros(n)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if "brightness" in enabled:
        gain = draw(*BRIGHTNESS)[:, None, None, None]
        contrast = draw(*BRIGHTNESS)[:, None, None, None]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean) * gain
    if "channel" in enabled:
        x = x + draw(-CHANNEL, CHANNEL, (n, 3))[:, :, None, None]
    return x.clamp(0.0, 1.0)


def parse_augment(text: str) -> frozenset[str]:
    """``flip,rotate`` -> that set; ``all`` every one; ``none`` none. ValueError names the known."""
    words = {w.strip() for w in text.split(",") if w.strip()}
    if words == {"all"}:
        return frozenset(AUGMENTATIONS)
    if words == {"none"}:
        return frozenset()
    unknown = sorted(words - set(AUGMENTATIONS))
    if unknown or not words:
        known = ", ".join(AUGMENTATIONS)
        raise ValueError(f"unknown augmentation {', '.join(unknown) or repr(text)} (known: {known}, all, none)")
    return frozenset(words)
