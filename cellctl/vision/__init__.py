"""Pixels to model inputs: locating the part, tiling it, converting and normalising tiles."""

from cellctl.vision.preprocess import InvalidImage, model_input, tile_rgb, to_rgb

__all__ = ["InvalidImage", "model_input", "tile_rgb", "to_rgb"]
