"""Host-side image handling: pixel-format conversion, regions, tiles and model input."""

from cellctl.vision.preprocess import InvalidImage, Prepared, prepare_batch, prepare_view, to_rgb

__all__ = ["InvalidImage", "Prepared", "prepare_batch", "prepare_view", "to_rgb"]
