"""Part profile: everything that depends on the fastener type (one YAML file per type)."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cellctl.drivers import SettingsModel
from cellctl.drivers.camera import FrameCameraSettings, LineScanSettings
from cellctl.drivers.lighting import LightingSettings
from cellctl.drivers.stage import MotionSettings
from cellctl.text import SafeName, SafePath, SafeText

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class Roi(SettingsModel):
    """Region of interest in the pixels the camera delivers."""

    x_px: int = Field(ge=0, description="left column")
    y_px: int = Field(ge=0, description="top row")
    width_px: int = Field(ge=16, description="columns")
    height_px: int = Field(ge=16, description="rows")


class Tiling(SettingsModel):
    """Split of the line-scan region into tiles, each one model input."""

    rows: int = Field(default=1, ge=1, le=16, description="tiles along the revolution")
    cols: int = Field(default=1, ge=1, le=16, description="tiles along the shank axis")


class PreprocessSettings(SettingsModel):
    input_size_px: int = Field(default=224, ge=32, le=1024, description="square model input")
    normalisation: Literal["fixed", "minmax"] = Field(
        default="fixed",
        description="fixed: pixel / 255 (keeps fluorescence brightness); minmax: per view to [0, 1]",
    )
    head_roi: Roi = Field(description="head region in the frame camera image")
    shank_roi: Roi = Field(description="shank region in the line-scan strip (x: along the axis)")
    shank_tiles: Tiling = Field(default_factory=Tiling)


class ModelSettings(SettingsModel):
    path: SafePath = Field(description="ONNX file, relative to the profile file")
    sha256: str = Field(pattern=SHA256_PATTERN, description="sha256 of the ONNX file, lower-case hex")


class DecisionSettings(SettingsModel):
    threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="a view with defect probability >= this rejects the part"
    )
    # Input invariants: a view darker than this is an empty fixture, a dead light or a capped
    # lens; brighter, an overexposed or flooded image. Either way the model was not trained
    # on it, so the part is RECHECK, never PASS.
    min_view_brightness: float = Field(
        default=0.022, ge=0.0, le=1.0, description="lowest mean of a view's 8-bit RGB / 255"
    )
    max_view_brightness: float = Field(
        default=0.6, ge=0.0, le=1.0, description="highest mean of a view's 8-bit RGB / 255"
    )

    @model_validator(mode="after")
    def verify_brightness_range(self) -> DecisionSettings:
        if self.min_view_brightness >= self.max_view_brightness:
            raise ValueError("min_view_brightness must be below max_view_brightness")
        return self


class SimGeometry(SettingsModel):
    """What the simulator renders for this part type (millimetres)."""

    shank_diameter_mm: float = Field(gt=1.0, le=48.0)
    length_mm: float = Field(gt=4.0, le=120.0, description="under-head length")
    thread_length_mm: float = Field(gt=0.0, le=120.0)
    thread_pitch_mm: float = Field(gt=0.2, le=5.0)
    head_across_flats_mm: float = Field(gt=2.0, le=75.0)
    head_height_mm: float = Field(gt=1.0, le=30.0)

    @model_validator(mode="after")
    def verify_thread_fits(self) -> SimGeometry:
        if self.thread_length_mm > self.length_mm:
            raise ValueError("thread_length_mm must not exceed length_mm")
        if self.head_across_flats_mm <= self.shank_diameter_mm:
            raise ValueError("head_across_flats_mm must exceed shank_diameter_mm")
        return self


class PartProfile(SettingsModel):
    schema_version: Literal[1] = 1
    part_number: SafeName
    description: SafeText = ""
    head_positions_deg: list[float] = Field(
        default_factory=lambda: [0.0, 90.0, 180.0, 270.0],
        min_length=1,
        max_length=12,
        description="turntable angles of the head shots, ascending in [0, 360)",
    )
    frame_camera: FrameCameraSettings = Field(default_factory=FrameCameraSettings)
    line_scan: LineScanSettings = Field(default_factory=LineScanSettings)
    lighting: LightingSettings = Field(default_factory=LightingSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    model: ModelSettings
    preprocess: PreprocessSettings
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    geometry: SimGeometry

    @field_validator("head_positions_deg")
    @classmethod
    def verify_positions(cls, value: list[float]) -> list[float]:
        if any(not 0.0 <= a < 360.0 for a in value):
            raise ValueError("every angle must be in [0, 360)")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("angles must be strictly ascending")
        return value

    @model_validator(mode="after")
    def verify_rois_inside_images(self) -> PartProfile:
        head, cam = self.preprocess.head_roi, self.frame_camera
        if head.x_px + head.width_px > cam.width_px or head.y_px + head.height_px > cam.height_px:
            raise ValueError(f"preprocess.head_roi must lie inside the {cam.width_px} x {cam.height_px} frame")
        shank, line = self.preprocess.shank_roi, self.line_scan
        if shank.x_px + shank.width_px > line.line_width_px or shank.y_px + shank.height_px > line.lines_per_revolution:
            raise ValueError(
                f"preprocess.shank_roi must lie inside the {line.line_width_px} x {line.lines_per_revolution} strip"
            )
        return self
